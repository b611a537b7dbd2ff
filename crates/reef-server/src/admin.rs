//! Model-repository operations shared by the HTTP and gRPC front ends:
//! the index, load and unload.

use crate::repository::{self, ModelConfig};
use crate::request_error::RequestError;
use crate::state::AppState;
use std::sync::Arc;

/// One row of the repository index.
pub struct IndexEntry {
    /// Model name.
    pub name: String,
    /// "READY" or "UNAVAILABLE".
    pub state: &'static str,
    /// Why it is unavailable (empty when ready).
    pub reason: String,
}

/// Models the service holds plus models of the repository not loaded.
pub fn repository_entries(state: &AppState, ready_only: bool) -> Vec<IndexEntry> {
    let mut entries: Vec<IndexEntry> = state
        .service
        .models()
        .into_iter()
        .map(|m| IndexEntry {
            state: if m.ready { "READY" } else { "UNAVAILABLE" },
            reason: if m.ready {
                String::new()
            } else {
                "not ready".into()
            },
            name: m.name,
        })
        .collect();
    if let Some(dir) = &state.repository {
        match repository::model_dirs(dir) {
            Ok(dirs) => {
                for d in dirs {
                    let (name, reason) = match ModelConfig::load(&d) {
                        Ok(c) => (c.name, "unloaded".to_string()),
                        Err(e) => (
                            d.file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                            e.to_string(),
                        ),
                    };
                    if !entries.iter().any(|e| e.name == name) {
                        entries.push(IndexEntry {
                            name,
                            state: "UNAVAILABLE",
                            reason,
                        });
                    }
                }
            }
            Err(e) => tracing::warn!("model repository index: {e}"),
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    if ready_only {
        entries.retain(|e| e.state == "READY");
    }
    entries
}

/// Loads repository model `name` into the service.
pub async fn load_from_repository(state: Arc<AppState>, name: String) -> Result<(), RequestError> {
    let dir = state
        .repository
        .clone()
        .ok_or_else(|| RequestError::bad("no model repository is configured on this server"))?;
    let task_state = state.clone();
    let task_name = name.clone();
    let joined = tokio::task::spawn_blocking(move || -> Result<ModelConfig, RequestError> {
        let config = repository::find_model(&dir, &task_name)
            .map_err(|e| RequestError::bad(e.to_string()))?
            .ok_or_else(|| {
                RequestError::not_found(format!(
                    "model '{task_name}' is not in the repository {}",
                    dir.display()
                ))
            })?;
        repository::load_model(task_state.service.as_ref(), &config).map_err(|e| match e {
            repository::LoadError::Source(e) => RequestError::bad(e.to_string()),
            repository::LoadError::Sched { source, .. } => {
                let mut r = RequestError::from(source);
                r.message = format!("loading model '{task_name}': {}", r.message);
                r
            }
        })?;
        Ok(config)
    })
    .await;
    let config =
        joined.map_err(|e| RequestError::internal(format!("loading model '{name}': {e}")))??;
    state.set_batch_limit(&config.name, Some(config.max_batch));
    tracing::info!(model = %name, "model loaded");
    Ok(())
}

/// Unloads model `name` from the service.
pub async fn unload(state: Arc<AppState>, name: String) -> Result<(), RequestError> {
    let service = state.service.clone();
    let task_name = name.clone();
    tokio::task::spawn_blocking(move || service.unload_model(&task_name))
        .await
        .map_err(|e| RequestError::internal(format!("unloading model '{name}': {e}")))??;
    tracing::info!(model = %name, "model unloaded");
    Ok(())
}
