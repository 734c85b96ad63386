//! The media stream resource API.
//!
//! [`Api::handle`] answers one HTTP request. The same handler serves:
//! * each Lambda function (`src/bin/*`, one per [`Operation`], behind API
//!   Gateway, see [`lambda`]);
//! * the local all-in-one server `mediastreams-local`, where one router
//!   serves every operation.
#![forbid(unsafe_code)]

mod api;
pub mod config;
pub mod lambda;
pub mod reaper;
mod routes;

pub use api::{Api, ApiConfig, MAX_BODY_BYTES};
pub use mediastreams_http::Problem;
pub use routes::{Operation, Route, RouteError, route};
