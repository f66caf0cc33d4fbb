"""CORDON_NATS_URL names one NATS server or a cluster's, comma-separated: nats-py wants a list."""
from __future__ import annotations

import pytest

from shared.bus import servers


def test_one_server_is_a_list_of_one() -> None:
    assert servers("nats://127.0.0.1:4222") == ["nats://127.0.0.1:4222"]


def test_a_cluster_s_urls_are_split_at_commas_and_trimmed() -> None:
    assert servers("nats://n1:4222, nats://n2:4222,nats://n3:4222 ,") == [
        "nats://n1:4222", "nats://n2:4222", "nats://n3:4222"]


def test_no_url_at_all_is_refused() -> None:
    with pytest.raises(ValueError, match="no NATS server URL"):
        servers(" , ")
