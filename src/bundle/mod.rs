//! The role bundle.
