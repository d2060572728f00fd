//! What the benchmark binaries share.

use anyhow::Context;

/// The whole number given as the `index`th command-line argument, or `default`.
pub fn argument(index: usize, default: usize) -> anyhow::Result<usize> {
    std::env::args()
        .nth(index)
        .map_or(Ok(default), |value| value.parse().context("not a number"))
}
