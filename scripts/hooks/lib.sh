# Shared by the azd hooks in this folder (sourced, not run). POSIX sh; needs only azd and curl.
#
# No Azure CLI: a token comes from azd's own sign-in,
#   azd auth token -o json --no-prompt --scope <resource>/.default    ->  {"token": "...", "expiresOn": "..."}
# (always -o json: the plain output changed in azd 1.23.14), and every call is ARM or Microsoft Graph REST
# through curl. azd auth token: https://learn.microsoft.com/azure/developer/azure-developer-cli/reference#azd-auth-token
#
# Secrets (the bearer token, the Function host key) never reach a command line, the terminal or a log:
# they live in mode-600 temp files (curl reads headers with -H @file and bodies with --data-binary @file)
# and in shell variables that are never echoed; no command tracing anywhere.

ARM_SCOPE=https://management.azure.com/.default
GRAPH_SCOPE=https://graph.microsoft.com/.default
# Test seams (a loopback fake in tests/infra/test_hooks.py); plain http is refused anywhere but 127.0.0.1.
ARM_ENDPOINT=${AZD_HOOKS_ARM_ENDPOINT:-https://management.azure.com}
GRAPH_ENDPOINT=${AZD_HOOKS_GRAPH_ENDPOINT:-https://graph.microsoft.com}
# Role assignments and a freshly deployed host can take minutes: keep retrying this long (seconds slept).
RETRY_SECONDS=${AZD_HOOKS_RETRY_SECONDS:-600}

HOOK_NAME=${HOOK_NAME:-azd-hook}
umask 077
HOOK_TMP=$(mktemp -d)
trap 'rm -rf "$HOOK_TMP"' EXIT
trap 'exit 130' INT TERM

log() { printf '%s: %s\n' "$HOOK_NAME" "$*" >&2; }
die() {
  log "$*"
  exit 1
}

require_env() {
  for var in "$@"; do
    eval "value=\${$var:-}"
    [ -n "$value" ] || die "$var is not set (run this through azd: azd hooks run $HOOK_NAME)"
  done
}

for endpoint in "$ARM_ENDPOINT" "$GRAPH_ENDPOINT"; do
  case "$endpoint" in
    https://* | http://127.0.0.1:*) ;;
    *) die "refusing to send a bearer token to $endpoint (https only)" ;;
  esac
done
command -v azd >/dev/null 2>&1 || die "azd is not on PATH"
command -v curl >/dev/null 2>&1 || die "curl is not on PATH"

# json_string FILE KEY: the first "KEY": "value" in a JSON file (values here never hold quotes).
json_string() {
  tr -d '\r\n' <"$1" | grep -o "\"$2\"[[:space:]]*:[[:space:]]*\"[^\"]*\"" | head -n 1 |
    sed 's/^.*:[[:space:]]*"\(.*\)"$/\1/'
}

# token_header SCOPE: writes "Authorization: Bearer <token>" into $HOOK_TMP/auth-<n> and prints that path.
token_header() {
  out="$HOOK_TMP/token.json"
  if ! azd auth token -o json --no-prompt --scope "$1" >"$out" 2>"$HOOK_TMP/token.err"; then
    log "azd auth token failed for $1:"
    sed 's/^/  /' "$HOOK_TMP/token.err" >&2
    die "sign in with 'azd auth login' (a pipeline: azd auth login --federated-credential-provider ...)"
  fi
  token=$(json_string "$out" token)
  rm -f "$out"
  [ -n "$token" ] || die "azd auth token returned no token for $1"
  header="$HOOK_TMP/auth-$(printf '%s' "$1" | tr -c 'A-Za-z0-9' '_')"
  printf 'Authorization: Bearer %s\n' "$token" >"$header"
  token=""
  printf '%s' "$header"
}

# request AUTH_FILE METHOD URL [BODY_FILE]: one call. Sets $status (000 when no HTTP answer) and leaves
# the response body in $HOOK_TMP/response.json and its headers in $HOOK_TMP/response.headers.
request() {
  set -- "$@" ""
  body_args=""
  if [ -n "$4" ]; then body_args="--data-binary @$4"; fi
  # shellcheck disable=SC2086  # body_args is empty or two words without spaces in them
  status=$(curl -sS --max-time 60 -o "$HOOK_TMP/response.json" -D "$HOOK_TMP/response.headers" \
    -w '%{http_code}' -X "$2" -H @"$1" -H 'Content-Type: application/json' $body_args "$3" \
    2>"$HOOK_TMP/curl.err") || status=000
  [ -n "$status" ] || status=000
}

# call_with_retry AUTH_FILE METHOD URL BODY_FILE OK_STATUSES: retries what time can fix (no answer, 401/403
# while roles propagate, 404 "not ready", 408, 409, 429, 5xx) with backoff for up to $RETRY_SECONDS.
# Returns 0 when $status is one of OK_STATUSES (space separated), 1 when the window is spent.
call_with_retry() {
  waited=0
  delay=5
  while :; do
    request "$1" "$2" "$3" "$4"
    case " $5 " in *" $status "*) return 0 ;; esac
    case "$status" in
      000 | 401 | 403 | 404 | 408 | 409 | 429 | 5??) ;;
      *) return 1 ;;
    esac
    [ "$waited" -lt "$RETRY_SECONDS" ] || return 1
    log "$2 ${3%%\?*}: HTTP $status, retrying in ${delay}s (${waited}s of ${RETRY_SECONDS}s spent)"
    sleep "$delay"
    waited=$((waited + delay))
    delay=$((delay * 2))
    [ "$delay" -le 60 ] || delay=60
  done
}

# error_summary: the code and message of an ARM/Graph error body, never the body of a success.
error_summary() {
  code=$(json_string "$HOOK_TMP/response.json" code)
  message=$(json_string "$HOOK_TMP/response.json" message)
  curl_err=$(head -c 300 "$HOOK_TMP/curl.err" 2>/dev/null || true)
  printf 'HTTP %s %s %s %s' "$status" "$code" "$message" "$curl_err"
}

azd_env_set() {
  azd env set "$1" "$2" >/dev/null || die "azd env set $1 failed"
}
