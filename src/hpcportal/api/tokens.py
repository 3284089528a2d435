"""``/auth/api-tokens``: personal API tokens for scripts and the CLI.

Creating and listing need a login session (an API token cannot mint more tokens);
revoking works with either, for one's own tokens, and for anyone's as an admin.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status

from hpcportal.api.params import DbId
from hpcportal.dependencies import ApiTokenCacheDep, CurrentUser, DbDep, SessionUser, strict_query
from hpcportal.services import api_tokens
from hpcportal.services.api_tokens import ApiTokenCreate, ApiTokenInfo, CreatedApiToken
from hpcportal.services.browser_session import client_address

router = APIRouter(prefix="/auth/api-tokens", tags=["auth"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CreatedApiToken,
    dependencies=[strict_query()],
)
def create_api_token(
    body: ApiTokenCreate, user: SessionUser, db: DbDep, request: Request, response: Response
) -> CreatedApiToken:
    """Create a token; the answer is the only time the token itself is shown."""
    created = api_tokens.create_token(db, user, body, address=client_address(request))
    response.headers["Cache-Control"] = "no-store"
    return created


@router.get("", response_model=list[ApiTokenInfo], dependencies=[strict_query()])
def list_api_tokens(user: SessionUser, db: DbDep) -> list[ApiTokenInfo]:
    """Your unrevoked tokens (expired ones marked), newest first, without their values."""
    return api_tokens.list_tokens(db, user)


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT, dependencies=[strict_query()])
def revoke_api_token(
    token_id: Annotated[DbId, Path()],
    user: CurrentUser,
    db: DbDep,
    cache: ApiTokenCacheDep,
    request: Request,
) -> None:
    """Revoke a token (yours; admins: anyone's). It is refused from the next request on."""
    api_tokens.revoke_token(db, cache, user, token_id, address=client_address(request))
