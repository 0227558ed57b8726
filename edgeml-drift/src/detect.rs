//! Streaming drift detectors.
