"""What session use cases need from the running portal (``SessionContext``)."""

from __future__ import annotations

from dataclasses import dataclass

from hpcportal.db.session import Database
from hpcportal.services.apps import AppCatalog
from hpcportal.services.node_tls import NodeTLS, node_tls_for
from hpcportal.services.secret_box import SecretBox, box_for
from hpcportal.services.submit import SubmitContext


@dataclass(frozen=True)
class SessionContext:
    """What session use cases need from the running portal."""

    submit: SubmitContext
    catalog: AppCatalog

    @property
    def database(self) -> Database:
        return self.submit.database

    @property
    def box(self) -> SecretBox:
        """Seals sessions' secrets for the database (the portal's key file)."""
        return box_for(self.submit.settings.secret_key_path)

    @property
    def tls(self) -> NodeTLS:
        """The portal's TLS client identity for sessions' servers (beside the key)."""
        return node_tls_for(self.submit.settings.secret_key_path.parent)
