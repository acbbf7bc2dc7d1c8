-- The Aether gateway's agent registry (docs/gateway.md, "Admin"): implementations registered
-- through the SDK's register_agent, with the orchestrator profile that launches them and their
-- default launch parameters (TARGETED tasks and lazy launch need the registration). launch_params
-- and capabilities are JSON objects, extensions a JSON array; times are unix ms. Written only by
-- the storage actor.
CREATE TABLE aether_agents (
    implementation TEXT PRIMARY KEY NOT NULL,
    orchestrator_profile TEXT NOT NULL,
    description TEXT NOT NULL,
    launch_params TEXT NOT NULL,
    capabilities TEXT NOT NULL,
    extensions TEXT NOT NULL,
    registered_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
