"""pytest plugin (`-p parlance_api_resources`) for running openai-python's
own generated tests (tests/api_resources/…, fetched from the pinned SDK's
sdist by scripts/reference/fetch_openai_python_tests.sh) against a real
`parlance serve`; crates/cli/tests/openai_api_resources.rs loads it.

The tests themselves run unmodified. The only failures allowed are the
all-params create tests listed in EXPECTED_400 below: they send
`max_tokens: 0` (chat, also `max_completion_tokens: 0`) or `best_of: 0`
(completions), which OpenAI itself refuses with a 400. Each is reported as
xfail only when it fails with exactly that: a 400 `BadRequestError` from the
server (the server's message is shown in the xfail reason). Failing any
other way (a 404 for the model, a 500, a malformed answer…) is a failure
like any other. One that passes is listed at the end of the run.

KNOWN_GAPS lists, apart, the tests of routes Parlance does not serve yet
(stored chat completions, deleting a fine-tuned model): each is xfail only
when Parlance answers it 404 or 405, and the architecture issue's closing
note says they are what is missing. The server runs with
`default_max_tokens = 64`, so the tests that set no `max_tokens` end in
seconds rather than filling the context.
"""

from __future__ import annotations

import signal

import openai
import pytest

# crates/cli/tests/openai_api_resources.rs interrupts a run that takes too
# long with SIGINT, so that pytest still prints what ran. A process started
# in the background by a non-interactive shell inherits SIGINT ignored, and
# Python then never turns it into KeyboardInterrupt: turn it back on.
signal.signal(signal.SIGINT, signal.default_int_handler)

_CHAT = "tests/api_resources/chat/test_completions.py"
_COMPLETIONS = "tests/api_resources/test_completions.py"

_ZERO_MAX_TOKENS = "sends max_tokens: 0 and max_completion_tokens: 0, which OpenAI refuses (400)"
_ZERO_BEST_OF = "sends best_of: 0, which OpenAI refuses (400)"


def _ids(path: str, test: str, reason: str) -> dict[str, str]:
    ids = {f"{path}::TestCompletions::{test}[{v}]": reason for v in ("loose", "strict")}
    ids.update(
        {f"{path}::TestAsyncCompletions::{test}[{v}]": reason for v in ("loose", "strict", "aiohttp")}
    )
    return ids


# node id -> why OpenAI itself answers it 400.
EXPECTED_400: dict[str, str] = {
    **_ids(_CHAT, "test_method_create_with_all_params_overload_1", _ZERO_MAX_TOKENS),
    **_ids(_CHAT, "test_method_create_with_all_params_overload_2", _ZERO_MAX_TOKENS),
    **_ids(_COMPLETIONS, "test_method_create_with_all_params_overload_1", _ZERO_BEST_OF),
    **_ids(_COMPLETIONS, "test_method_create_with_all_params_overload_2", _ZERO_BEST_OF),
}

_NO_STORED_CHAT = (
    "stored chat completions (GET/POST/DELETE /v1/chat/completions/{id}, GET "
    "/v1/chat/completions) are not served yet; the tests send made-up ids"
)
_NO_MODEL_DELETE = "DELETE /v1/models/{id} (deleting a fine-tuned model) is not served"

# node id -> why Parlance does not serve it yet: known gaps, each failing
# only with a 404 or 405 from Parlance (anything else is a failure). Listed
# so the rest of the suite guards what is served; see the closing notes of
# the architecture issue.
KNOWN_GAPS: dict[str, str] = {
    **{
        nodeid: _NO_STORED_CHAT
        for kind in ("retrieve", "update", "delete")
        for test in (f"test_method_{kind}", f"test_raw_response_{kind}", f"test_streaming_response_{kind}")
        for nodeid in _ids(_CHAT, test, "")
    },
    **{
        nodeid: _NO_STORED_CHAT
        for test in (
            "test_method_list",
            "test_method_list_with_all_params",
            "test_raw_response_list",
            "test_streaming_response_list",
        )
        for nodeid in _ids(_CHAT, test, "")
    },
    **{
        nodeid.replace("TestCompletions", "TestModels").replace("TestAsyncCompletions", "TestAsyncModels"): _NO_MODEL_DELETE
        for test in ("test_method_delete", "test_raw_response_delete", "test_streaming_response_delete")
        for nodeid in _ids("tests/api_resources/test_models.py", test, "")
    },
}

_passed_anyway: list[str] = []


def _filtered(config: pytest.Config) -> bool:
    opt = config.option
    return (
        bool(getattr(opt, "keyword", "") or getattr(opt, "markexpr", "") or getattr(opt, "deselect", None))
        or any("::" in str(arg) for arg in config.args)
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A renamed test must not silently drop out of the list: every expected
    # failure of a collected file has to be collected too (unless the run was
    # narrowed with -k / -m / --deselect or to single tests).
    if _filtered(config):
        return
    collected = {item.nodeid for item in items}
    files = {nodeid.split("::", 1)[0] for nodeid in collected}
    listed = {**EXPECTED_400, **KNOWN_GAPS}
    missing = sorted(n for n in listed if n.split("::", 1)[0] in files and n not in collected)
    if missing:
        raise pytest.UsageError(
            "expected failures that were not collected (renamed upstream? update EXPECTED_400 in "
            "tests/openai_api_resources/parlance_api_resources.py):\n  " + "\n  ".join(missing)
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    gap = KNOWN_GAPS.get(item.nodeid)
    if gap is not None and report.when == "call":
        err = call.excinfo.value if call.excinfo is not None else None
        if report.failed and isinstance(err, openai.APIStatusError) and err.status_code in (404, 405):
            report.outcome = "skipped"
            report.wasxfail = f"known gap: {gap}; parlance: {err.status_code}"
        elif report.passed:
            _passed_anyway.append(item.nodeid)
        return report
    reason = EXPECTED_400.get(item.nodeid)
    if reason is None or report.when != "call":
        return report
    if report.passed:
        _passed_anyway.append(item.nodeid)
    elif report.failed and call.excinfo is not None and isinstance(call.excinfo.value, openai.BadRequestError):
        err = call.excinfo.value
        report.outcome = "skipped"
        report.wasxfail = f"{reason}; parlance: {err.message}"
    return report


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _passed_anyway:
        terminalreporter.section("passed although OpenAI answers them 400")
        for nodeid in _passed_anyway:
            terminalreporter.line(f"{nodeid}: {EXPECTED_400.get(nodeid) or KNOWN_GAPS[nodeid]}")
