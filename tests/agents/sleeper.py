#!/usr/bin/env python3
"""A helper an agent leaves running: sleeps until killed (stdlib only).

tests/safe_run.rs starts it from an agent's launch command (`sh -c "python3 sleeper.py & exec
python3 fake_acp_agent.py"`), so it is a grandchild of the node in the agent's process group, with
no parent-death signal of its own: only a group kill ends it.
"""
import time

while True:
    time.sleep(3600)
