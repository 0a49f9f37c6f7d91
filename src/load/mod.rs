//! Load generation: the typed plan, request building, the HTTP client, the executors and the
//! recorder.
pub mod body;
pub mod executor;
pub mod http1;
pub mod plan;
pub mod recorder;
pub mod splice;
pub mod sys;
pub mod template;
pub mod vu;
