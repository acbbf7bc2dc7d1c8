//! The core's module dependencies form a DAG whose direction follows the supervision tree: each
//! top-level module may import only modules of a lower layer. This test reads the sources (not
//! test code) and fails naming the offending import, so a cycle cannot creep back in.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers, lowest first. A module may use modules of strictly lower layers only.
const LAYERS: &[&[&str]] = &[
    // Leaf types: timestamps, ids, errors, the restart policy.
    &["clock", "ids", "error", "restart"],
    // The data model built from them; the node's identity (key pair, id, signatures); API tokens.
    &["model", "identity", "tokens"],
    // Pure logic over them, the actor helpers, and the metric names.
    &["state_machine", "supervision", "adapters", "telemetry"],
    // Artifact bytes.
    &["artifacts"],
    // The only writer, and reads.
    &["storage"],
    // What tasks and runtimes exchange; what nodes exchange.
    &["port", "node_proto"],
    // Services with no knowledge of tasks: runtimes, discovery, SSE fan-out, the Aether
    // gateway's presence and connection actors.
    &["runtime", "registry", "sse", "peers", "aether"],
    // One actor per live task, and its supervisor.
    &["task"],
    &["task_supervisor"],
    // The one task-creation path, and the thread coordinator that uses it.
    &["intake"],
    &["threads"],
    // The root supervisor: builds every handle.
    &["root"],
    // The only way in for bindings.
    &["service"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Top-level module a source file belongs to (`runtime/acp.rs` → `runtime`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_string_lossy().into_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (name != "lib").then_some(name)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The `crate::<module>` names used by non-test code of `text`.
fn imports(text: &str) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                found.insert(name);
            }
            rest = after;
        }
    }
    found
}

#[test]
fn core_modules_form_a_layered_dag() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 10, "no sources found under {}", src.display());
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else { continue };
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let deps = graph.entry(module.clone()).or_default();
        deps.extend(imports(&text).into_iter().filter(|d| *d != module));
    }
    let mut problems = Vec::new();
    for (module, deps) in &graph {
        let Some(layer) = layer_of(module) else {
            problems.push(format!("module '{module}' has no layer in LAYERS (add it where it belongs)"));
            continue;
        };
        for dep in deps {
            match layer_of(dep) {
                None => problems.push(format!("'{module}' uses '{dep}', which has no layer")),
                Some(l) if l >= layer => {
                    problems.push(format!("'{module}' (layer {layer}) uses '{dep}' (layer {l}): not a lower layer"))
                }
                Some(_) => {}
            }
        }
    }
    assert!(problems.is_empty(), "layering violations:\n  {}", problems.join("\n  "));
}
