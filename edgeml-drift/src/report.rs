//! Per-feature drift reports.
