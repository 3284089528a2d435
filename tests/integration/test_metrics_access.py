"""``/metrics`` over a real socket: the peer address decides, or the token does."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.integration.portals import PortalFactory

ALLOWED_PEER = "127.0.0.2"  # loopback, but not the address clients use by default


def test_only_the_configured_peer_or_the_token_reads_metrics(
    make_portal: PortalFactory, tmp_path: Path
) -> None:
    token = tmp_path / "metrics.token"
    token.write_text("scraper-token-0123456789\n")
    with make_portal.run(
        tmp=tmp_path, metrics_allowed_networks=[f"{ALLOWED_PEER}/32"], metrics_token_file=token
    ) as portal:
        with portal.client() as from_default:  # 127.0.0.1: not in the list
            refused = from_default.get("/metrics")
            assert refused.status_code == 403, refused.text
            assert refused.json()["code"] == "forbidden"
            bearer = {"Authorization": "Bearer scraper-token-0123456789"}
            assert from_default.get("/metrics", headers=bearer).status_code == 200
            assert from_default.get("/health").status_code == 200
        transport = httpx.HTTPTransport(local_address=ALLOWED_PEER)
        with httpx.Client(base_url=portal.url, transport=transport, timeout=30) as peer:
            answer = peer.get("/metrics")
        assert answer.status_code == 200
        assert 'route="/metrics",status="403"' in answer.text
        assert "hpcportal_build_info{" in answer.text
