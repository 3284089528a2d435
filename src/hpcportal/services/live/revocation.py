"""The token-revocation sweep: close sockets whose login or API token ended."""

from __future__ import annotations

import time

from sqlalchemy import or_, select
from starlette.concurrency import run_in_threadpool

from hpcportal.db.models import ApiToken
from hpcportal.services import auth
from hpcportal.services.live.fanout import HubBase
from hpcportal.services.live.protocol import CLOSE_NOT_AUTHENTICATED, SESSION_EXPIRED, TOKEN_REVOKED
from hpcportal.services.snapshot import ClusterSnapshot


class RevocationSweep(HubBase):
    """Sockets whose login ended: closed on logout here at once, and once per refresh
    for logins that expired or were revoked elsewhere and for revoked API tokens."""

    # --- sessions that end ------------------------------------------------------------------

    def session_ended(self, jti: str) -> None:
        """A token was revoked (logout): close its sockets. Safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._close_session, jti)

    def _close_session(self, jti: str) -> None:
        for conn in list(self._connections):
            if conn.identity.jti == jti:
                self.close(conn, CLOSE_NOT_AUTHENTICATED, auth.SESSION_ENDED)

    async def _check_sessions(self, _: ClusterSnapshot) -> None:
        """Once per refresh: close sockets whose login expired or was revoked elsewhere
        (another replica's logout), and those of revoked or expired API tokens."""
        conns = list(self._connections)
        if not conns:
            return
        if any(c.identity.jti for c in conns) and self.revocations.needs_sync():
            await run_in_threadpool(self._sync_revocations)
        now = auth.utcnow()
        for conn in conns:
            ident = conn.identity
            if ident.jti is not None and ident.jti in self.revocations:
                self.close(conn, CLOSE_NOT_AUTHENTICATED, auth.SESSION_ENDED)
            elif ident.expires_at is not None and ident.expires_at <= now:
                self.close(conn, CLOSE_NOT_AUTHENTICATED, SESSION_EXPIRED)
        token_ids = {c.identity.token_id for c in conns if c.identity.token_id is not None}
        every = max(self.settings.api_token_cache_seconds, 5.0)
        if token_ids and time.monotonic() - self._tokens_checked >= every:
            self._tokens_checked = time.monotonic()
            valid = await run_in_threadpool(self._valid_tokens, token_ids)
            for conn in conns:
                if conn.identity.token_id is not None and conn.identity.token_id not in valid:
                    self.close(conn, CLOSE_NOT_AUTHENTICATED, TOKEN_REVOKED)

    def _sync_revocations(self) -> None:
        with self.database.session() as session:
            self.revocations.sync(session)

    def _valid_tokens(self, token_ids: set[int]) -> set[int]:
        now = auth.utcnow()
        with self.database.session() as session:
            rows = session.scalars(
                select(ApiToken.id).where(
                    ApiToken.id.in_(sorted(token_ids)),
                    ApiToken.revoked_at.is_(None),
                    or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now),
                )
            ).all()
        return set(rows)
