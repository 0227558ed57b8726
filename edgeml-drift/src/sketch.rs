//! Mergeable sketches.
