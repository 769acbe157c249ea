"""Static checks of collector-config/: the OpenTelemetry Collector configurations (one per
route) and the Grafana dashboard over the forwarded GenAI histograms.

No otelcol-contrib binary runs here (none is installable on this machine), so these tests
check structure and names: pipelines wired to defined components, component types that
ship in the contrib distribution, the recommended processors, OTLP in, secrets only from
the environment, and PromQL that names only the series our four histograms become.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

CONFIG_DIR = Path(__file__).resolve().parent.parent / "collector-config"
CONFIGS = ("grafana-cloud.yaml", "grafana-stack.yaml", "datadog.yaml", "debug.yaml")
SECTIONS = ("receivers", "processors", "exporters", "connectors", "extensions")

# The component types these configurations use. Every one is built into otelcol-contrib:
# they are from its manifest, distributions/otelcol-contrib/manifest.yaml in
# open-telemetry/opentelemetry-collector-releases (otlpreceiver, memorylimiterprocessor,
# batchprocessor, transformprocessor, debugexporter, otlpexporter, otlphttpexporter,
# prometheusremotewriteexporter, datadogexporter, datadogconnector, basicauthextension).
# `loki` is deliberately absent: the loki exporter was removed from contrib (v0.131.0).
CONTRIB_TYPES = {
    "receivers": {"otlp"},
    "processors": {"memory_limiter", "batch", "transform"},
    "exporters": {"debug", "otlp", "otlphttp", "prometheusremotewrite", "datadog"},
    "connectors": {"datadog"},
    "extensions": {"basicauth"},
}

# Keys whose values are credentials: each must be read from the environment.
SECRET_KEYS = {"key", "token", "password", "api_key", "headers", "client_auth", "secret"}
SECRET_SUFFIXES = ("_key", "_token", "_password", "_secret")
# A secret is a bare reference: a `:-default` would be a literal value in the file.
SECRET_REFERENCE = re.compile(r"^\$\{env:[A-Za-z_][A-Za-z0-9_]*\}$")
# Every `${...}` in a configuration: the collector's env provider, optional `:-default`.
ENV_REFERENCE = re.compile(r"\$\{([^}]*)\}")
ENV_URI = re.compile(r"^env:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?$")

# --- the dashboard -----------------------------------------------------------------------
DASHBOARD = CONFIG_DIR / "grafana-dashboard.json"
# Our histograms as the OTLP -> Prometheus translation names them: dots become
# underscores, unit `s` appends `_seconds`, the annotation unit `{token}` is dropped; a
# counter gets `_total`. Today's GenAI names, the current ones (with
# OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental), and ours.
HISTOGRAMS = {
    "gen_ai.client.operation.duration": "gen_ai_client_operation_duration_seconds",
    "gen_ai.client.token.usage": "gen_ai_client_token_usage",
    "gen_ai.server.time_to_first_token": "gen_ai_server_time_to_first_token_seconds",
    "gen_ai.server.time_per_output_token": "gen_ai_server_time_per_output_token_seconds",
    "gen_ai.client.inference.duration": "gen_ai_client_inference_duration_seconds",
    "gen_ai.client.inference.time_to_first_chunk":
        "gen_ai_client_inference_time_to_first_chunk_seconds",
    "gen_ai.client.inference.time_per_output_chunk":
        "gen_ai_client_inference_time_per_output_chunk_seconds",
    "octomil.inference.queue.duration": "octomil_inference_queue_duration_seconds",
    "octomil.inference.prefill.duration": "octomil_inference_prefill_duration_seconds",
    "octomil.inference.decode.duration": "octomil_inference_decode_duration_seconds",
}  # fmt: skip
COUNTERS = {"gen_ai.client.inference.usage.output_tokens":
            "gen_ai_client_inference_usage_output_tokens_total"}  # fmt: skip
METRICS = {
    f"{base}_{suffix}" for base in HISTOGRAMS.values() for suffix in ("bucket", "sum", "count")
} | set(COUNTERS.values())
DURATION_COUNT = "gen_ai_client_operation_duration_seconds_count"
INFERENCE_COUNT = "gen_ai_client_inference_duration_seconds_count"
TTFT_BUCKET = "gen_ai_server_time_to_first_token_seconds_bucket"
TTFC_BUCKET = "gen_ai_client_inference_time_to_first_chunk_seconds_bucket"
# Our metric attributes and the device.id resource attribute, translated; `le` is the
# bucket bound, `job` comes from service.name.
LABELS = {
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_token_type",
    "error_type",
    "device_id",
    "job",
    "le",
}
NOT_EMBEDDINGS = 'gen_ai_operation_name!="embeddings", '
MODEL_FILTER = re.compile(r'gen_ai_request_model\s*=~\s*"\$model"')
PROMQL_WORDS = frozenset(
    {
        "sum", "avg", "min", "max", "count", "rate", "increase", "histogram_quantile",
        "vector", "clamp_min", "or", "and", "unless", "bool",
        "by", "without", "on", "ignoring", "group_left", "group_right",
    }
)  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")


# --- helpers -----------------------------------------------------------------------------
def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((CONFIG_DIR / name).read_text())


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def defined(config: dict[str, Any], section: str) -> set[str]:
    return set(config.get(section) or {})


def pipelines(config: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    return config["service"]["pipelines"]


def reference_problems(config: dict[str, Any]) -> list[str]:
    """Components a pipeline (or service.extensions) names without defining them."""
    connectors = defined(config, "connectors")
    allowed = {
        "receivers": defined(config, "receivers") | connectors,
        "processors": defined(config, "processors"),
        "exporters": defined(config, "exporters") | connectors,
    }
    problems = [
        f"pipeline {name}: {role} {component!r} is not defined"
        for name, pipeline in pipelines(config).items()
        for role, known in allowed.items()
        for component in pipeline.get(role) or []
        if component not in known
    ]
    problems += [
        f"service.extensions: {extension!r} is not defined"
        for extension in config["service"].get("extensions") or []
        if extension not in defined(config, "extensions")
    ]
    return problems


def unused_problems(config: dict[str, Any]) -> list[str]:
    """Components defined but never used (a connector must both export and receive)."""
    used = {role: set() for role in ("receivers", "processors", "exporters")}
    for pipeline in pipelines(config).values():
        for role, components in used.items():
            components.update(pipeline.get(role) or [])
    problems = [
        f"{section}: {component!r} is defined but unused"
        for section in ("receivers", "processors", "exporters")
        for component in sorted(defined(config, section) - used[section])
    ]
    problems += [
        f"connectors: {connector!r} must be an exporter and a receiver"
        for connector in sorted(defined(config, "connectors"))
        if connector not in used["exporters"] or connector not in used["receivers"]
    ]
    problems += [
        f"extensions: {extension!r} is not in service.extensions"
        for extension in sorted(defined(config, "extensions"))
        if extension not in (config["service"].get("extensions") or [])
    ]
    return problems


def _is_secret_key(key: object) -> bool:
    name = str(key).lower()
    return name in SECRET_KEYS or name.endswith(SECRET_SUFFIXES)


def _leaves(node: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, (*path, str(k)))]
    if isinstance(node, list):
        return [leaf for i, v in enumerate(node) for leaf in _leaves(v, (*path, str(i)))]
    return [(path, node)]


def secret_problems(node: Any, path: tuple[str, ...] = ()) -> list[str]:
    """Every value under a credential key that is not a bare ``${env:NAME}``."""
    problems: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            here = (*path, str(key))
            if _is_secret_key(key):
                problems += [
                    f"{'.'.join(leaf_path)} = {leaf!r}"
                    for leaf_path, leaf in _leaves(value, here)
                    if not (isinstance(leaf, str) and SECRET_REFERENCE.match(leaf))
                ]
            else:
                problems += secret_problems(value, here)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            problems += secret_problems(value, (*path, str(index)))
    return problems


def env_references(name: str) -> list[str]:
    return ENV_REFERENCE.findall((CONFIG_DIR / name).read_text())


def _mask(expr: str) -> str:
    """``expr`` with string literals, label matchers, ranges and grouping clauses blanked
    out (same length), so that the identifiers left are functions, operators and metrics."""
    masked = expr
    for pattern in (_STRING, re.compile(r"\{[^}]*\}"), re.compile(r"\[[^\]]*\]"), _GROUPING):
        masked = pattern.sub(lambda m: " " * len(m.group()), masked)
    return masked


def vector_selectors(expr: str) -> list[tuple[str, str]]:
    """(metric name, label matchers) of every vector selector in a PromQL expression."""
    masked = _mask(expr)
    # braces inside string literals must not end a matcher list: find the braces with the
    # literals blanked (same length), then take the matchers from the original text
    unquoted = _STRING.sub(lambda m: '"' + " " * (len(m.group()) - 2) + '"', expr)
    selectors = []
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", masked):
        if match.group() in PROMQL_WORDS:
            continue
        braces = re.compile(r"\s*\{([^}]*)\}").match(unquoted, match.end())
        selectors.append((match.group(), expr[braces.start(1) : braces.end(1)] if braces else ""))
    return selectors


def label_names(expr: str) -> set[str]:
    """Label names in the matchers and the by/without/on/ignoring clauses of ``expr``."""
    names: set[str] = set()
    for _, matchers in vector_selectors(expr):
        unquoted = _STRING.sub('""', matchers)
        names.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", unquoted))
    for group in _GROUPING.findall(_STRING.sub('""', expr)):
        names.update(name.strip() for name in group.split(",") if name.strip())
    return names


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that is not a row, including those inside collapsed rows."""
    found = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels") or [])
        else:
            found.append(panel)
    return found


def panel(title: str) -> dict[str, Any]:
    matches = [p for p in panels(dashboard()) if p["title"] == title]
    assert len(matches) == 1, f"expected one panel titled {title!r}, found {len(matches)}"
    return matches[0]


def exprs(board: dict[str, Any]) -> list[str]:
    return [target["expr"] for p in panels(board) for target in p["targets"]]


def variable(name: str) -> dict[str, Any]:
    (found,) = [v for v in dashboard()["templating"]["list"] if v["name"] == name]
    return found


# --- the collector configurations --------------------------------------------------------
@pytest.mark.parametrize("name", CONFIGS)
def test_config_parsed_has_traces_metrics_logs_pipelines(name: str) -> None:
    config = load(name)
    assert isinstance(config, dict)
    assert set(pipelines(config)) == {"traces", "metrics", "logs"}


@pytest.mark.parametrize("name", CONFIGS)
def test_pipeline_component_referenced_is_defined(name: str) -> None:
    assert reference_problems(load(name)) == []


@pytest.mark.parametrize("name", CONFIGS)
def test_component_defined_is_used(name: str) -> None:
    assert unused_problems(load(name)) == []


@pytest.mark.parametrize("name", CONFIGS)
def test_component_type_ships_in_contrib(name: str) -> None:
    config = load(name)
    unknown = {
        section: sorted(
            component
            for component in defined(config, section)
            if component_type(component) not in CONTRIB_TYPES[section]
        )
        for section in SECTIONS
    }
    assert unknown == {section: [] for section in SECTIONS}


@pytest.mark.parametrize("name", CONFIGS)
def test_pipeline_processors_first_is_memory_limiter(name: str) -> None:
    firsts = {
        pipeline_name: component_type((pipeline.get("processors") or ["<none>"])[0])
        for pipeline_name, pipeline in pipelines(load(name)).items()
    }
    assert firsts == {pipeline_name: "memory_limiter" for pipeline_name in firsts}


@pytest.mark.parametrize("name", CONFIGS)
def test_pipeline_processors_every_one_has_batch(name: str) -> None:
    without_batch = [
        pipeline_name
        for pipeline_name, pipeline in pipelines(load(name)).items()
        if "batch" not in [component_type(p) for p in pipeline.get("processors") or []]
    ]
    assert without_batch == []


@pytest.mark.parametrize("name", CONFIGS)
def test_otlp_receiver_protocols_are_grpc_and_http(name: str) -> None:
    protocols = load(name)["receivers"]["otlp"]["protocols"]
    assert set(protocols) == {"grpc", "http"}


@pytest.mark.parametrize("name", CONFIGS)
def test_otlp_receiver_default_endpoints_are_loopback_4317_4318(name: str) -> None:
    protocols = load(name)["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "${env:OTLP_GRPC_ENDPOINT:-127.0.0.1:4317}"
    assert protocols["http"]["endpoint"] == "${env:OTLP_HTTP_ENDPOINT:-127.0.0.1:4318}"


@pytest.mark.parametrize("name", CONFIGS)
def test_pipeline_fed_by_receivers_includes_otlp(name: str) -> None:
    config = load(name)
    receivers = defined(config, "receivers")
    fed = {
        pipeline_name: "otlp" in pipeline["receivers"]
        for pipeline_name, pipeline in pipelines(config).items()
        if any(r in receivers for r in pipeline["receivers"])
    }
    assert fed, "expected a pipeline fed by a receiver"
    assert fed == {pipeline_name: True for pipeline_name in fed}


@pytest.mark.parametrize("name", CONFIGS)
def test_secret_values_are_env_references(name: str) -> None:
    assert secret_problems(load(name)) == []


@pytest.mark.parametrize("name", CONFIGS)
def test_env_reference_syntax_is_env_provider(name: str) -> None:
    references = env_references(name)
    assert references, "expected ${env:...} references"
    assert [r for r in references if not ENV_URI.match(r)] == []


@pytest.mark.parametrize("name", CONFIGS)
def test_env_variable_referenced_is_documented_in_readme(name: str) -> None:
    readme = (CONFIG_DIR / "README.md").read_text()
    names = {ENV_URI.match(r)["name"] for r in env_references(name)}
    assert sorted(n for n in names if f"`{n}`" not in readme) == []


def test_grafana_cloud_exporter_authenticates_with_basicauth_from_env() -> None:
    config = load("grafana-cloud.yaml")
    assert config["exporters"] == {
        "otlphttp/grafana_cloud": {
            "endpoint": "${env:GRAFANA_CLOUD_OTLP_ENDPOINT}",
            "auth": {"authenticator": "basicauth/grafana_cloud"},
        }
    }
    assert config["extensions"]["basicauth/grafana_cloud"] == {
        "client_auth": {
            "username": "${env:GRAFANA_CLOUD_INSTANCE_ID}",
            "password": "${env:GRAFANA_CLOUD_API_TOKEN}",
        }
    }
    assert config["service"]["extensions"] == ["basicauth/grafana_cloud"]


def test_grafana_cloud_metrics_device_id_copied_to_datapoints() -> None:
    config = load("grafana-cloud.yaml")
    (group,) = config["processors"]["transform/device_id"]["metric_statements"]
    assert group["context"] == "datapoint"
    assert group["statements"] == [
        'set(attributes["device.id"], resource.attributes["device.id"])'
        ' where resource.attributes["device.id"] != nil'
    ]
    assert pipelines(config)["metrics"]["processors"] == [
        "memory_limiter",
        "transform/device_id",
        "batch",
    ]


def test_grafana_stack_exporters_are_tempo_remote_write_and_loki_otlp() -> None:
    config = load("grafana-stack.yaml")
    exporters = config["exporters"]
    assert exporters["otlp/tempo"]["endpoint"] == "${env:TEMPO_ENDPOINT}"
    assert exporters["prometheusremotewrite"]["endpoint"] == "${env:PROMETHEUS_REMOTE_WRITE_URL}"
    assert exporters["otlphttp/loki"] == {"endpoint": "${env:LOKI_OTLP_ENDPOINT}"}
    assert {name: p["exporters"] for name, p in pipelines(config).items()} == {
        "traces": ["otlp/tempo"],
        "metrics": ["prometheusremotewrite"],
        "logs": ["otlphttp/loki"],
    }


def test_grafana_stack_remote_write_resource_attributes_become_labels() -> None:
    exporter = load("grafana-stack.yaml")["exporters"]["prometheusremotewrite"]
    assert exporter["resource_to_telemetry_conversion"] == {"enabled": True}


def test_datadog_connector_feeds_trace_stats_into_metrics() -> None:
    config = load("datadog.yaml")
    assert config["connectors"] == {"datadog/connector": None}
    assert pipelines(config)["traces"]["exporters"] == ["datadog/connector", "datadog"]
    assert pipelines(config)["metrics"]["receivers"] == ["otlp", "datadog/connector"]
    assert pipelines(config)["metrics"]["exporters"] == ["datadog"]


def test_datadog_exporter_key_and_site_from_env() -> None:
    exporter = load("datadog.yaml")["exporters"]["datadog"]
    assert exporter["api"] == {"key": "${env:DD_API_KEY}", "site": "${env:DD_SITE:-datadoghq.com}"}
    assert exporter["metrics"]["resource_attributes_as_tags"] is True


def test_debug_exporter_verbosity_is_detailed() -> None:
    assert load("debug.yaml")["exporters"] == {"debug": {"verbosity": "detailed"}}


# --- the checkers themselves report what they are for ------------------------------------
BROKEN = {
    "receivers": {"otlp": {}, "zipkin": {}},
    "processors": {"batch": {}},
    "exporters": {"debug": {}, "otlphttp": {"headers": {"Authorization": "Basic abc123"}}},
    "connectors": {"forward": {}},
    "extensions": {"basicauth": {"client_auth": {"password": "hunter2"}}},
    "service": {
        "pipelines": {
            "traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["datadog"]},
            "metrics": {
                "receivers": ["otlp"],
                "processors": ["memory_limiter"],
                "exporters": ["debug"],
            },
            "logs": {"receivers": ["otlp"], "exporters": ["forward"]},
        }
    },
}


def test_reference_check_undefined_component_is_reported() -> None:
    assert reference_problems(BROKEN) == [
        "pipeline traces: exporters 'datadog' is not defined",
        "pipeline metrics: processors 'memory_limiter' is not defined",
    ]


def test_unused_check_unused_component_is_reported() -> None:
    assert unused_problems(BROKEN) == [
        "receivers: 'zipkin' is defined but unused",
        "exporters: 'otlphttp' is defined but unused",
        "connectors: 'forward' must be an exporter and a receiver",
        "extensions: 'basicauth' is not in service.extensions",
    ]


def test_secret_check_literal_value_is_reported() -> None:
    assert secret_problems(BROKEN) == [
        "exporters.otlphttp.headers.Authorization = 'Basic abc123'",
        "extensions.basicauth.client_auth.password = 'hunter2'",
    ]


def test_secret_check_env_reference_with_default_is_reported() -> None:
    config = {"exporters": {"datadog": {"api": {"key": "${env:DD_API_KEY:-0123abcd}"}}}}
    assert secret_problems(config) == ["exporters.datadog.api.key = '${env:DD_API_KEY:-0123abcd}'"]


def test_promql_parser_selectors_and_labels_are_found() -> None:
    expr = 'sum by (le) (rate(foo_bucket{a="x{y}", b!=""}[5m])) / bar or vector(0)'
    assert vector_selectors(expr) == [("foo_bucket", 'a="x{y}", b!=""'), ("bar", "")]
    assert label_names(expr) == {"le", "a", "b"}


# --- the dashboard -----------------------------------------------------------------------
def test_dashboard_json_parses_with_schema_version_39() -> None:
    board = dashboard()
    assert board["schemaVersion"] == 39
    assert panels(board), "expected panels"


def test_dashboard_datasource_variable_is_prometheus_datasource() -> None:
    datasource = variable("datasource")
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")


def test_dashboard_model_variable_lists_models_multi_with_all() -> None:
    model = variable("model")
    query = (
        'label_values({__name__=~"gen_ai_client_operation_duration_seconds_count|'
        'gen_ai_client_inference_duration_seconds_count"}, gen_ai_request_model)'
    )
    assert model["type"] == "query"
    assert model["query"] == query
    assert model["definition"] == query
    assert model["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    assert (model["multi"], model["includeAll"]) == (True, True)


def test_dashboard_panels_query_datasource_variable() -> None:
    sources = {
        json.dumps(source, sort_keys=True)
        for p in panels(dashboard())
        for source in [p["datasource"], *(t["datasource"] for t in p["targets"])]
    }
    assert sources == {json.dumps({"type": "prometheus", "uid": "${datasource}"}, sort_keys=True)}


def test_dashboard_exprs_name_only_forwarded_metrics() -> None:
    names = {name for expr in exprs(dashboard()) for name, _ in vector_selectors(expr)}
    assert names, "expected metric selectors"
    assert names - METRICS == set()


def test_dashboard_exprs_name_only_translated_labels() -> None:
    board = dashboard()
    used = {label for expr in exprs(board) for label in label_names(expr)}
    legends = {
        label
        for p in panels(board)
        for target in p["targets"]
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", ""))
    }
    assert (used | legends) - LABELS == set()


def test_dashboard_every_selector_filters_by_model_variable() -> None:
    unfiltered = [
        (metric, matchers)
        for expr in exprs(dashboard())
        for metric, matchers in vector_selectors(expr)
        if not MODEL_FILTER.search(matchers)
    ]
    assert unfiltered == []


def test_dashboard_ttfc_view_has_heatmap_and_percentiles() -> None:
    heatmap = panel("TTFC distribution")
    assert heatmap["type"] == "heatmap"
    ((target),) = heatmap["targets"]
    assert target["format"] == "heatmap"
    assert [name for name, _ in vector_selectors(target["expr"])] == [TTFT_BUCKET, TTFC_BUCKET]
    assert target["expr"].startswith("sum by (le) (rate(")

    percentiles = panel("TTFC p50 / p90 / p99")
    assert percentiles["type"] == "timeseries"
    quantiles = [
        re.match(r"histogram_quantile\(([0-9.]+), ", t["expr"]).group(1)
        for t in percentiles["targets"]
    ]
    assert quantiles == ["0.5", "0.9", "0.99"]
    for target in percentiles["targets"]:  # today's names, else the current ones
        assert [name for name, _ in vector_selectors(target["expr"])] == [TTFT_BUCKET, TTFC_BUCKET]


def test_dashboard_throughput_view_groups_by_model_and_engine() -> None:
    throughput = panel("Throughput by model and engine (output tokens/s)")
    assert [t["expr"] for t in throughput["targets"]] == [
        "sum by (gen_ai_request_model, gen_ai_provider_name) "
        '(rate(gen_ai_client_token_usage_sum{gen_ai_token_type="output", '
        'gen_ai_request_model=~"$model"}[$__rate_interval])) or '
        "sum by (gen_ai_request_model, gen_ai_provider_name) "
        "(rate(gen_ai_client_inference_usage_output_tokens_total{"
        'gen_ai_request_model=~"$model"}[$__rate_interval]))'
    ]
    per_token = panel("Time per output token p50 by model and engine")
    ((target),) = per_token["targets"]
    assert target["expr"].startswith(
        "histogram_quantile(0.5, sum by (le, gen_ai_request_model, gen_ai_provider_name) "
        "(rate(gen_ai_server_time_per_output_token_seconds_bucket{"
    )


def test_dashboard_requests_view_has_volume_error_and_cancel_rates() -> None:
    volume = panel("Request volume (requests/s)")
    ((target),) = volume["targets"]
    assert [name for name, _ in vector_selectors(target["expr"])] == [
        DURATION_COUNT,
        INFERENCE_COUNT,
    ]
    assert volume["fieldConfig"]["defaults"]["unit"] == "reqps"

    errors = panel("Error rate")
    by_legend = {t["legendFormat"]: vector_selectors(t["expr"]) for t in errors["targets"]}
    assert set(by_legend) == {"errors", "cancelled"}
    for selectors in by_legend.values():
        # numerator: the failed (or cancelled) requests; denominator: all requests; each
        # under today's names, else the current ones
        assert [metric for metric, _ in selectors] == [DURATION_COUNT, INFERENCE_COUNT] * 2
        # today's names record embeddings in the same histogram: they are not requests here
        assert selectors[0][1] == NOT_EMBEDDINGS + selectors[1][1]
        assert selectors[2][1] == NOT_EMBEDDINGS + selectors[3][1]
        assert "error_type" not in selectors[2][1] + selectors[3][1]
    assert 'error_type!=""' in by_legend["errors"][0][1]
    assert 'error_type!="cancelled"' in by_legend["errors"][0][1]
    assert 'error_type="cancelled"' in by_legend["cancelled"][0][1]
    assert errors["fieldConfig"]["defaults"]["unit"] == "percentunit"


def test_dashboard_devices_view_groups_every_query_by_device_id() -> None:
    devices = panel("Per-device breakdown")
    assert devices["type"] == "table"
    assert [t["refId"] for t in devices["targets"]] == ["A", "B", "C"]
    for target in devices["targets"]:
        assert "device_id" in label_names(target["expr"])
        assert (target["instant"], target["format"]) == (True, "table")
    renamed = devices["transformations"][1]["options"]["renameByName"]
    assert renamed == {
        "device_id": "Device",
        "Value #A": "Requests",
        "Value #B": "TTFC p90",
        "Value #C": "Throughput",
    }


def test_dashboard_time_split_view_stacks_queue_prefill_decode_per_model() -> None:
    split = panel("Mean time per completed request by phase and model")
    assert split["type"] == "barchart"
    assert (split["options"]["stacking"], split["options"]["xField"]) == (
        "normal",
        "gen_ai_request_model",
    )
    phases = {}
    for target in split["targets"]:
        # a phase's time per completed request of the model, whichever naming counts them
        (phase, *requests) = vector_selectors(target["expr"])
        completed = 'error_type="", gen_ai_request_model=~"$model"'
        assert phase[1] == completed
        assert requests == [(DURATION_COUNT, NOT_EMBEDDINGS + completed),
                            (INFERENCE_COUNT, completed)]  # fmt: skip
        assert (target["instant"], target["format"]) == (True, "table")
        phases[target["refId"]] = phase[0]
    assert phases == {
        "A": "octomil_inference_queue_duration_seconds_sum",
        "B": "octomil_inference_prefill_duration_seconds_sum",
        "C": "octomil_inference_decode_duration_seconds_sum",
    }
    renamed = split["transformations"][1]["options"]["renameByName"]
    assert renamed == {"Value #A": "queue", "Value #B": "prefill", "Value #C": "decode"}
    assert split["fieldConfig"]["defaults"]["unit"] == "s"
