"""The hub package's pieces that need no server: which hub a call uses, and the request limits that
huggingface_hub's shared client gets through its public API."""

import pytest

from hubmod.errors import HubmodError
from hubmod.hub import HfHub, LocalHub, get_hub
from hubmod.hub.hf import limit_request_time, refuse_unsafe_file_headers


def _ours(client):
    hooks = client.event_hooks
    return ([h for h in hooks["request"] if hasattr(h, "hubmod_timeout")],
            [h for h in hooks["response"] if h is refuse_unsafe_file_headers])


def test_the_shared_client_gets_the_time_limit_and_the_header_check_once(monkeypatch):
    from huggingface_hub import get_session

    monkeypatch.setenv("HUBMOD_HUB_TIMEOUT", "7")
    limit_request_time()
    limit_request_time()
    timeouts, checks = _ours(get_session())
    assert [h.hubmod_timeout for h in timeouts] == [7.0] and len(checks) == 1
    monkeypatch.setenv("HUBMOD_HUB_TIMEOUT", "9")  # a new limit replaces the old hook, it does not stack
    limit_request_time()
    assert [h.hubmod_timeout for h in _ours(get_session())[0]] == [9.0]


def test_a_client_the_user_installs_gets_the_hooks_and_keeps_its_own(monkeypatch):
    import httpx2
    from huggingface_hub import get_session, set_client_factory

    def own(request):
        pass

    set_client_factory(lambda: httpx2.Client(event_hooks={"request": [own]}))
    try:
        limit_request_time()
        client = get_session()
        assert own in client.event_hooks["request"] and all(map(len, _ours(client)))
    finally:
        from huggingface_hub.utils._http import default_client_factory  # restore for the other tests

        set_client_factory(default_client_factory)


def test_a_timeout_that_is_not_a_positive_number_is_one_line(monkeypatch):
    monkeypatch.setenv("HUBMOD_HUB_TIMEOUT", "soon")
    with pytest.raises(HubmodError, match="HUBMOD_HUB_TIMEOUT='soon' is not a number of seconds"):
        limit_request_time()


@pytest.mark.parametrize("env, expected", [
    ({}, LocalHub), ({"HUBMOD_HUB": "hf"}, HfHub), ({"HF_TOKEN": "x"}, HfHub), ({"HF_ENDPOINT": "http://h"}, HfHub),
    ({"HUBMOD_HUB": "local", "HF_TOKEN": "x"}, LocalHub),
])
def test_the_hub_rule(monkeypatch, env, expected):
    for var in ("HUBMOD_HUB", "HF_TOKEN", "HF_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert isinstance(get_hub(), expected)
    assert isinstance(get_hub("local"), LocalHub)
    with pytest.raises(HubmodError, match="unknown hub 'ftp'"):
        get_hub("ftp")
