# Installs, when missing, what building and testing envplane needs. Sourced by the
# scripts in scripts/; every function is idempotent.

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        echo "envplane needs the Rust toolchain (cargo): install it with rustup (https://rustup.rs)" >&2
        exit 1
    fi
    if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
        rustup component add rustfmt clippy
    fi
}
