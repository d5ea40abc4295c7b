"""The rules the APIM policies and templates must follow, as pure checks (docs/apim.md).

Each check takes file text and returns a list of problems, empty when the rule holds. The tests run
them on infra/ (expecting none) and on altered copies (expecting the problem), so a check that
cannot fail is caught too. Policy XML is parsed with ElementTree, which drops comments: a rule
quoted in a comment neither satisfies nor breaks a check.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tests.infra import bicep_text as bt

# The caller-context headers, in the order the policy sets them, and the expression each must carry.
CALLER_HEADER_EXPRESSIONS: dict[str, str] = {
    "x-apim-request-id": "context.RequestId",
    "x-apim-subscription-id": "context.Subscription?.Id",
    "x-apim-subscription-name": "context.Subscription?.Name",
    "x-apim-product-id": "context.Product?.Id",
    "x-apim-user-id": "context.User?.Id",
    "x-apim-client-ip": "context.Request.IpAddress",
}

# Policies that read, buffer or rewrite a body: none may appear (SSE guidance, how-to-server-sent-events).
BODY_POLICIES = frozenset(
    {
        "set-body",
        "validate-content",
        "find-and-replace",
        "json-to-xml",
        "xml-to-json",
        "xsl-transform",
        "cache-lookup",
        "cache-store",
        "mock-response",
        "azure-openai-token-limit",
        "azure-openai-emit-token-metric",
        "llm-token-limit",
        "llm-emit-token-metric",
        "azure-openai-semantic-cache-lookup",
        "azure-openai-semantic-cache-store",
        "llm-content-safety",
    }
)
_BODY_ACCESS = re.compile(r"\.Body\b")
_NULLABLE = re.compile(r"context\.(User|Product|Subscription)\b(?P<rest>.{0,40})", re.DOTALL)
_NULL_SAFE = re.compile(r"^\?\.\w+\s*\?\?")


def parse(xml_text: str) -> ET.Element:
    return ET.fromstring(xml_text)


def expression_texts(root: ET.Element) -> list[str]:
    """Every attribute value and text node: where policy expressions live (comments excluded)."""
    texts: list[str] = []
    for element in root.iter():
        texts.extend(element.attrib.values())
        if element.text and element.text.strip():
            texts.append(element.text)
        if element.tail and element.tail.strip():
            texts.append(element.tail)
    return texts


def check_well_formed(xml_text: str) -> list[str]:
    try:
        parse(xml_text)
    except ET.ParseError as exc:
        return [f"not well-formed XML: {exc}"]
    return []


def check_forward_request(policy_xml: str) -> list[str]:
    root = parse(policy_xml)
    forwards = root.findall(".//forward-request")
    if len(forwards) != 1:
        return [f"expected exactly one forward-request, found {len(forwards)}"]
    problems = []
    backend = root.find("backend")
    if backend is None or backend.find("forward-request") is None:
        problems.append("forward-request is not in the backend section")
    elif backend.find("base") is not None:
        problems.append("the backend section keeps <base />: a second, buffered forward may run")
    attrs = forwards[0].attrib
    if attrs.get("buffer-response") != "false":
        problems.append('forward-request must set buffer-response="false" (SSE)')
    if attrs.get("fail-on-error-status-code") != "false":
        problems.append(
            'forward-request must set fail-on-error-status-code="false" (429s pass through)'
        )
    timeout = attrs.get("timeout", "")
    if not timeout.isdigit() or not 0 < int(timeout) <= 240:
        problems.append("forward-request timeout must be set and at most 240 seconds")
    return problems


def check_no_body_access(xml_text: str) -> list[str]:
    root = parse(xml_text)
    problems = [
        f"policy <{e.tag}> reads or buffers a body" for e in root.iter() if e.tag in BODY_POLICIES
    ]
    for text in expression_texts(root):
        if _BODY_ACCESS.search(text):
            problems.append(f"expression reads a body: {text.strip()[:80]}")
    return problems


def check_null_safe(xml_text: str) -> list[str]:
    """context.User / Product / Subscription are null for some scopes: only `?.X ?? default`."""
    problems = []
    for text in expression_texts(parse(xml_text)):
        for m in _NULLABLE.finditer(text):
            if not _NULL_SAFE.match(m.group("rest")):
                problems.append(f"not null-safe: context.{m.group(1)}{m.group('rest')[:20]}")
    return problems


def _set_headers(section: ET.Element) -> list[tuple[str, str, str]]:
    """(lower-cased name, exists-action, value text) of each set-header, in document order."""
    found = []
    for element in section.iter("set-header"):
        value = element.find("value")
        text = (value.text or "") if value is not None else ""
        found.append(
            (element.get("name", "").lower(), element.get("exists-action", "override"), text)
        )
    return found


def check_caller_headers(
    policy_xml: str, headers: Mapping[str, str] = CALLER_HEADER_EXPRESSIONS
) -> list[str]:
    """Each caller-context header is deleted, then set once from the right expression (no spoofing)."""
    inbound = parse(policy_xml).find("inbound")
    if inbound is None:
        return ["no inbound section"]
    ops = _set_headers(inbound)
    problems = []
    for name, expression in headers.items():
        positions = [(i, action, text) for i, (n, action, text) in enumerate(ops) if n == name]
        deletes = [i for i, action, _ in positions if action == "delete"]
        sets = [(i, text) for i, action, text in positions if action != "delete"]
        if not deletes:
            problems.append(f"{name}: the client's value is not removed first")
        if len(sets) != 1:
            problems.append(f"{name}: expected one set-header with a value, found {len(sets)}")
            continue
        index, text = sets[0]
        if deletes and max(deletes) > index:
            problems.append(f"{name}: removed after it is set")
        if sets[0][1].strip()[:2] != "@(" or expression not in text:
            problems.append(f"{name}: value is not {expression}")
    return problems


def check_strips_consumer_key(policy_xml: str) -> list[str]:
    inbound = parse(policy_xml).find("inbound")
    deleted = (
        {n for n, action, _ in _set_headers(inbound) if action == "delete"}
        if inbound is not None
        else set()
    )
    return [
        f"the consumer's {h} header reaches the Function"
        for h in ("api-key", "authorization")
        if h not in deleted
    ]


def references(policy_xml: str) -> dict[str, set[str]]:
    """Names a policy refers to: backends, fragments, loggers, named values."""
    root = parse(policy_xml)
    return {
        "backend": {e.get("backend-id", "") for e in root.iter("set-backend-service")},
        "fragment": {e.get("fragment-id", "") for e in root.iter("include-fragment")},
        "logger": {e.get("logger-id", "") for e in root.iter("log-to-eventhub")},
        "named_value": set(re.findall(r"\{\{([\w.-]+)\}\}", policy_xml)),
    }


# Fields of the gateway event (docs/apim.md "Gateway event").
GATEWAY_EVENT_FIELDS = (
    "type",
    "request_id",
    "subscription_id",
    "product_id",
    "user_id",
    "client_ip",
    "api",
    "operation",
    "url_path",
    "status",
    "region",
    "gateway_ttfb_ms",
)


def check_gateway_event(fragment_xml: str) -> list[str]:
    root = parse(fragment_xml)
    logs = list(root.iter("log-to-eventhub"))
    if len(logs) != 1:
        return [f"expected one log-to-eventhub, found {len(logs)}"]
    log = logs[0]
    problems = []
    if "context.Subscription?.Id" not in log.get("partition-key", ""):
        problems.append("partition-key is not the APIM subscription id")
    if log.get("partition-id") is not None:
        problems.append("partition-id and partition-key are exclusive")
    body = log.text or ""
    if 'new JProperty("type", "gateway")' not in body:
        problems.append('the event is not typed "gateway"')
    names = set(re.findall(r'new JProperty\("([\w]+)"', body))
    problems.extend(
        f"gateway event lacks {name}" for name in GATEWAY_EVENT_FIELDS if name not in names
    )
    if "context.Elapsed" not in body:
        problems.append("gateway_ttfb_ms does not come from context.Elapsed")
    problems.extend(check_logged_once(root))
    return problems


SENT_FLAG = "gateway-event-sent"


def check_logged_once(root: ET.Element) -> list[str]:
    """The fragment runs in outbound and again in on-error: only the first run may log. The
    log-to-eventhub must sit in a <when> testing that the flag is not set, and that <when> must set
    the flag (set-variable) before logging."""
    for when in root.iter("when"):
        if when.find("log-to-eventhub") is None:
            continue
        condition = when.get("condition", "").replace(" ", "")
        if f'!context.Variables.ContainsKey("{SENT_FLAG}")' not in condition:
            return ["the gateway event is not guarded by the gateway-event-sent flag"]
        children = list(when)
        setters = [
            i
            for i, c in enumerate(children)
            if c.tag == "set-variable" and c.get("name") == SENT_FLAG
        ]
        if not setters or setters[0] > children.index(when.find("log-to-eventhub")):
            return ["the guard does not set gateway-event-sent before logging"]
        return []
    return ["log-to-eventhub is not inside a <when> guard: on-error could log a second event"]


# ---------------------------------------------------------------- templates


@dataclass(frozen=True)
class Operation:
    method: str
    url_template: str

    def matches(self, method: str, path: str) -> bool:
        """APIM-style match of a path relative to the API (`{x}` one segment, `/*` any rest)."""
        if method != self.method:
            return False
        pattern = re.escape(self.url_template)
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", pattern)
        pattern = pattern.replace("/\\*", "/.+")
        return re.fullmatch(pattern, path) is not None


def operations(api_bicep: str) -> list[Operation]:
    """Operations declared by the loops over `namedOperations` and `wildcardMethods`."""
    text = bt.strip_comments(api_bicep)
    found: list[Operation] = []
    named = re.search(r"^\s*var\s+namedOperations\s*=\s*\[", text, re.MULTILINE)
    if named:
        open_index = named.end() - 1
        block = text[open_index + 1 : bt.matching_brace(text, open_index)]
        for m in re.finditer(r"\{", block):
            if block[: m.start()].count("{") - block[: m.start()].count("}") != 0:
                continue
            entries = bt.top_level_entries(
                block[m.start() + 1 : bt.matching_brace(block, m.start())]
            )
            method, template = (
                bt.unquote(entries.get("method")),
                bt.unquote(entries.get("urlTemplate")),
            )
            if method and template:
                found.append(Operation(method, template))
    wild = re.search(r"^\s*var\s+wildcardMethods\s*=\s*\[", text, re.MULTILINE)
    if wild and re.search(r"urlTemplate:\s*'/\*'", text):
        open_index = wild.end() - 1
        block = text[open_index + 1 : bt.matching_brace(text, open_index)]
        found.extend(Operation(m, "/*") for m in re.findall(r"'([A-Z]+)'", block))
    return found


def sample_paths(template: str) -> list[str]:
    """Concrete paths for a Functions route template (`{name}`, `{*rest}`)."""
    if "{*" in template:
        return [
            re.sub(r"\{\*[^}]+\}", rest, template) for rest in ("v1/models", "files/file-1/content")
        ]
    return [re.sub(r"\{[^}]+\}", "gpt-4o", template)]


def check_routes_reachable(
    ops: Sequence[Operation],
    routes: Iterable[str],
    methods: Iterable[str],
    api_path: str = "openai",
) -> list[str]:
    """Every route the Function serves under /<api_path>/ is matched by an operation, for every method."""
    problems = []
    prefix = api_path.strip("/") + "/"
    for template in routes:
        if not template.startswith(prefix):
            problems.append(f"route {template} is outside the API path /{api_path}")
            continue
        for path in sample_paths(template):
            relative = "/" + path[len(prefix) :]
            missing = [m for m in methods if not any(op.matches(m, relative) for op in ops)]
            if missing:
                problems.append(f"{'/'.join(missing)} /{path} matches no APIM operation")
    return problems


APIM_TYPE = "Microsoft.ApiManagement/"
APIM_API_VERSION = "2024-05-01"
ALLOWED_SKUS = {"BasicV2", "StandardV2", "Developer"}


def _apim_resources(text: str) -> list[bt.Resource]:
    return [r for r in bt.resources(bt.strip_comments(text)) if r.type.startswith(APIM_TYPE)]


def _of_type(text: str, suffix: str) -> list[bt.Resource]:
    return [r for r in _apim_resources(text) if r.type == APIM_TYPE + suffix and not r.existing]


def check_api_versions(text: str) -> list[str]:
    return [
        f"{r.symbol}: {r.type}@{r.api_version}, expected @{APIM_API_VERSION}"
        for r in _apim_resources(text)
        if r.api_version != APIM_API_VERSION
    ]


def check_sku(service_bicep: str) -> list[str]:
    text = bt.strip_comments(service_bicep)
    problems = []
    m = re.search(
        r"@allowed\(\[(?P<values>[^\]]*)\]\)\s*param\s+skuName\s+string\s*=\s*'(?P<default>\w+)'",
        text,
    )
    if not m:
        return ["param skuName with @allowed and a default not found"]
    allowed = set(re.findall(r"'(\w+)'", m.group("values")))
    if allowed != ALLOWED_SKUS:
        problems.append(f"skuName allows {sorted(allowed)}, expected {sorted(ALLOWED_SKUS)}")
    if m.group("default") != "BasicV2":
        problems.append(f"skuName defaults to {m.group('default')}, expected BasicV2")
    if bt.param_default(text, "skuCapacity") != "1":
        problems.append("skuCapacity must default to 1")
    services = _of_type(text, "service")
    if not services or bt.get_path(services[0].body, "sku.name") != "skuName":
        problems.append("the service's sku.name is not the skuName param")
    return problems


def check_loggers(api_bicep: str) -> list[str]:
    problems = []
    loggers = _of_type(api_bicep, "service/loggers")
    kinds = {bt.unquote(bt.get_path(r.body, "properties.loggerType")): r for r in loggers}
    for kind, needed, forbidden in (
        ("azureEventHub", ("name", "endpointAddress", "identityClientId"), ("connectionString",)),
        ("applicationInsights", ("connectionString", "identityClientId"), ("instrumentationKey",)),
    ):
        logger = kinds.get(kind)
        if logger is None:
            problems.append(f"no {kind} logger")
            continue
        credentials = bt.object_body(bt.get_path(logger.body, "properties.credentials") or "") or ""
        entries = bt.top_level_entries(credentials)
        problems.extend(
            f"{kind} logger credentials lack {key}" for key in needed if key not in entries
        )
        problems.extend(
            f"{kind} logger credentials carry {key}" for key in forbidden if key in entries
        )
    return problems


def check_named_values(api_bicep: str, all_outputs: Sequence[bt.Output]) -> list[str]:
    problems = []
    values = _of_type(api_bicep, "service/namedValues")
    if not values:
        problems.append("no named value for the Function key")
    for r in values:
        if bt.get_path(r.body, "properties.secret") != "true":
            problems.append(f"named value {r.symbol} is not secret: true")
        for output in all_outputs:
            if re.search(rf"\b{r.symbol}\.(properties|listValue)", output.value):
                problems.append(f"output {output.name} exposes named value {r.symbol}")
    if re.search(r"\blist(Keys|Secrets|Value)\s*\(|\.list\w*\(", bt.strip_comments(api_bicep)):
        problems.append("a list*() call reads a secret during deployment")
    return problems


def check_api(api_bicep: str) -> list[str]:
    apis = _of_type(api_bicep, "service/apis")
    if len(apis) != 1:
        return [f"expected one API, found {len(apis)}"]
    body = apis[0].body
    problems = []
    if (
        bt.unquote(bt.get_path(body, "properties.subscriptionKeyParameterNames.header"))
        != "api-key"
    ):
        problems.append("the subscription key header is not api-key")
    if bt.get_path(body, "properties.subscriptionRequired") != "true":
        problems.append("subscriptionRequired is not true")
    protocols = bt.get_path(body, "properties.protocols") or ""
    if re.findall(r"'(\w+)'", protocols) != ["https"]:
        problems.append("protocols must be https only")
    if bt.unquote(bt.get_path(body, "properties.path")) != "openai":
        problems.append("the API path is not openai")
    return problems


def check_diagnostics_no_body(api_bicep: str) -> list[str]:
    text = bt.strip_comments(api_bicep)
    problems = []
    if not _of_type(text, "service/apis/diagnostics"):
        problems.append("no API diagnostics")
    problems.extend(
        f"a diagnostic logs {n} body bytes"
        for n in re.findall(r"\bbytes:\s*(\d+)", text)
        if n != "0"
    )
    if "largeLanguageModel" in text:
        problems.append("LLM message logging copies prompts and buffers streams")
    for r in _of_type(text, "service/apis/diagnostics"):
        for side in ("frontend", "backend"):
            if bt.get_path(r.body, f"properties.{side}") is None:
                problems.append(f"diagnostics {r.symbol} leaves {side} logging at its defaults")
    return problems


def check_backend(api_bicep: str, named_value_var: str) -> list[str]:
    """Every backend sends `{{<named value>}}` (by the var holding its name) as x-functions-key,
    over https with certificate checks."""
    backends = _of_type(api_bicep, "service/backends")
    if not backends:
        return ["no backend"]
    problems = []
    for backend in backends:
        body = bt.strip_comments(backend.body)
        if not (bt.unquote(bt.get_path(body, "properties.url")) or "").startswith("https://"):
            problems.append(f"backend {backend.symbol} url is not https")
        header = bt.get_path(body, "properties.credentials.header") or ""
        # Key mode only: `credentials: keyMode ? <var> : null`, the var holding {header: ...}.
        mode_var = re.fullmatch(
            r"keyMode\s*\?\s*(\w+)\s*:\s*null", bt.get_path(body, "properties.credentials") or ""
        )
        if mode_var:
            text = bt.strip_comments(api_bicep)
            header = bt.var_object(text, mode_var.group(1)).get("header", "")
        if "'x-functions-key'" not in header or "'{{${" + named_value_var + "}}}'" not in header:
            problems.append(
                f"backend {backend.symbol} does not send the named value as x-functions-key"
            )
        for flag in ("validateCertificateChain", "validateCertificateName"):
            if bt.get_path(body, f"properties.tls.{flag}") != "true":
                problems.append(f"backend {backend.symbol} tls.{flag} is not true")
    return problems


def backend_urls(api_bicep: str) -> dict[str, str]:
    """Backend entity name (its `var` resolved) -> its URL as written."""
    urls = {}
    for backend in _of_type(api_bicep, "service/backends"):
        body = bt.strip_comments(backend.body)
        raw = (bt.get_path(body, "name") or "").strip()
        name = bt.unquote(raw) if raw.startswith("'") else bicep_var(api_bicep, raw)
        urls[name or raw] = bt.unquote(bt.get_path(body, "properties.url")) or ""
    return urls


def check_route_behind_operation(
    api_bicep: str, operation_policy_xml: str, route_template: str, host: str
) -> list[str]:
    """A Function route outside the API's path (the origin's api/aoaifn) is reached by a POST
    operation whose policy keeps the API policy (<base /> in every section) and picks a backend
    whose URL followed by the operation's path is `https://<host>/<route>`."""
    name = route_template.rsplit("/", 1)[-1]
    if Operation("POST", "/" + name) not in operations(api_bicep):
        return [f"no POST operation /{name} for the route {route_template}"]
    problems = []
    root = parse(operation_policy_xml)
    for section in ("inbound", "backend", "outbound", "on-error"):
        element = root.find(section)
        if element is None or element.find("base") is None:
            problems.append(f"the operation policy's {section} section has no <base />")
    urls = backend_urls(api_bicep)
    targets = {
        urls.get(backend, "?") + "/" + name
        for backend in references(operation_policy_xml)["backend"]
    }
    if targets != {f"https://{host}/{route_template}"}:
        problems.append(f"the operation sends {route_template} to {sorted(targets)}")
    return problems


def bicep_var(text: str, name: str) -> str | None:
    m = re.search(rf"^\s*var\s+{name}\s*=\s*'([^']*)'", bt.strip_comments(text), re.MULTILINE)
    return m.group(1) if m else None
