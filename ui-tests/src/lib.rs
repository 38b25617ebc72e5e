//! Nothing here: the crate exists for `tests/macros_ui.rs`, so that trybuild
//! builds the facade without the facade's heavy dev-dependencies.
