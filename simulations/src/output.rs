//! Writing results: CSV tables and simple SVG line charts, no dependencies.

pub mod csv;
pub mod svg;
