//! kprox configuration.
//!
//! Raw configuration ([`RawConfig`]) mirrors what users write in TOML, `KPROX_*` environment
//! variables and flags; [`load`] layers them (defaults < file < environment < flags) and
//! [`validate`] turns the result into the typed [`Config`] whose sections the components take.
//! Errors ([`ConfigError`]) name the file or variable, the key and the fix.

mod config;
mod duration;
mod error;
mod load;
mod print_format;
pub mod raw;
mod validate;

pub use config::*;
pub use duration::{DurationError, GoDuration};
pub use error::ConfigError;
pub use load::{ENV_PREFIX, Sources, load, parse_toml};
pub use raw::RawConfig;
pub use validate::*;
