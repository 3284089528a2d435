"""Templates in the database (SQLite and PostgreSQL): CRUD, permissions, history, use."""

from __future__ import annotations

from typing import Any, cast

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from hpcportal.db import models
from hpcportal.db.session import Database
from hpcportal.errors import Forbidden, InvalidInput, NotFound
from hpcportal.services import templates as service
from hpcportal.services.identity import Principal
from hpcportal.services.submit import SubmitContext
from hpcportal.services.submit_models import (
    JobRequest,
    SubmitPreview,
    SubmitResult,
    TestOnlyVerdict,
)
from hpcportal.services.template_seeds import SITE_TEMPLATES
from hpcportal.services.templates import RenderIn, TemplateIn

ALICE = Principal(username="alice", uid=2001, gid=2001, groups=("research",), role="user")
BOB = Principal(username="bob", uid=2002, gid=2001, groups=("research",), role="user")
CAROL = Principal(username="carol", uid=2003, gid=2003, groups=("hpc-admins",), role="admin")


def body(**overrides: Any) -> TemplateIn:
    values: dict[str, Any] = {
        "name": "Hello",
        "category": "python",
        "script": "#!/bin/bash\necho hello {{ who }}\n",
        "options": {"time_limit": "10"},
        "parameters": [{"name": "who", "type": "string", "default": "world"}],
    }
    values.update(overrides)
    return TemplateIn.model_validate(values)


def create(database: Database, who: Principal, **overrides: Any) -> int:
    with database.session() as session:
        return service.create_template(session, body(**overrides), who).id


def audit_actions(database: Database) -> list[tuple[str, str, str | None]]:
    with database.session() as session:
        rows = session.scalars(select(models.AuditEntry).order_by(models.AuditEntry.id))
        return [(r.username, r.action, r.target) for r in rows]


# --- Create and read ------------------------------------------------------------------


def test_a_user_creates_a_personal_template(database: Database) -> None:
    template_id = create(database, ALICE)
    with database.session() as session:
        out = service.get_template(session, template_id, ALICE)
    assert (out.scope, out.owner, out.version, out.use_count) == ("personal", "alice", 1, 0)
    assert out.options == {"time_limit": "10"}
    assert out.parameters[0].label == "who"
    assert audit_actions(database) == [("alice", "template.create", f"template:{template_id}")]


def test_only_admins_create_site_templates(database: Database) -> None:
    with database.session() as session, pytest.raises(Forbidden):
        service.create_template(session, body(scope="site"), ALICE)
    template_id = create(database, CAROL, scope="site")
    with database.session() as session:
        out = service.get_template(session, template_id, ALICE)
    assert (out.scope, out.owner) == ("site", None)


def test_broken_templates_are_refused_when_saved(database: Database) -> None:
    for bad in (
        {"script": "{% if %}"},
        {"script": 'echo "{{ who }}"\n'},
        {"options": {"gpus": -1}},
        {"options": {"script": "x"}},
    ):
        with database.session() as session, pytest.raises(InvalidInput):
            service.create_template(session, body(**bad), ALICE)


def test_personal_templates_are_invisible_to_everyone_else(database: Database) -> None:
    template_id = create(database, ALICE)
    for other in (BOB, CAROL):
        with database.session() as session, pytest.raises(NotFound):
            service.get_template(session, template_id, other)
        with database.session() as session, pytest.raises(NotFound):
            service.update_template(session, template_id, body(name="mine"), other)
        with database.session() as session, pytest.raises(NotFound):
            service.delete_template(session, template_id, other)
        with database.session() as session, pytest.raises(NotFound):
            service.render(session, template_id, other, RenderIn())


def test_listing_shows_site_and_own_templates_with_filters(database: Database) -> None:
    site = create(database, CAROL, scope="site", name="Site GPU", category="GPU")
    mine = create(database, ALICE, name="Mine", category="python")
    create(database, BOB, name="Bob's", category="python")
    with database.session() as session:
        ids = [t.id for t in service.list_templates(session, ALICE).items]
        assert ids == [site, mine]
        gpu = service.list_templates(session, ALICE, category="gpu").items
        assert [t.id for t in gpu] == [site]
        personal = service.list_templates(session, ALICE, scope="personal").items
        assert [t.id for t in personal] == [mine]
        assert service.categories(session, ALICE) == ["GPU", "python"]


# --- Update, history, delete ----------------------------------------------------------


def test_updates_keep_the_previous_versions(database: Database) -> None:
    template_id = create(database, ALICE)
    with database.session() as session:
        service.update_template(session, template_id, body(script="echo two\n"), ALICE)
    with database.session() as session:
        out = service.update_template(
            session, template_id, body(script="echo three\n", parameters=[]), ALICE
        )
    assert out.version == 3 and out.script == "echo three\n"
    with database.session() as session:
        versions = service.history(session, template_id, ALICE)
    assert [(v.version, v.current) for v in versions] == [(3, True), (2, False), (1, False)]
    assert versions[1].script == "echo two\n"
    assert versions[2].script.endswith("echo hello {{ who }}\n")
    assert versions[2].parameters[0].name == "who"
    assert versions[2].options == {"time_limit": "10"}
    assert {v.edited_by for v in versions} == {"alice"}
    assert versions[0].edited_at >= versions[1].edited_at >= versions[2].edited_at
    assert [a for _, a, _ in audit_actions(database)].count("template.update") == 2


def test_site_templates_are_changed_by_admins_only(database: Database) -> None:
    template_id = create(database, CAROL, scope="site")
    with database.session() as session, pytest.raises(Forbidden):
        service.update_template(session, template_id, body(scope="site"), ALICE)
    with database.session() as session, pytest.raises(Forbidden):
        service.delete_template(session, template_id, ALICE)
    with database.session() as session:
        out = service.update_template(session, template_id, body(scope="site", name="v2"), CAROL)
    assert (out.name, out.updated_by) == ("v2", "carol")
    with database.session() as session:  # a PUT may leave the scope out
        out = service.update_template(session, template_id, body(name="v3"), CAROL)
    assert (out.scope, out.version) == ("site", 3)


def test_the_scope_cannot_change(database: Database) -> None:
    template_id = create(database, CAROL)
    with database.session() as session, pytest.raises(InvalidInput, match="scope"):
        service.update_template(session, template_id, body(scope="site"), CAROL)


def test_deleting_removes_the_history_too(database: Database) -> None:
    template_id = create(database, ALICE)
    with database.session() as session:
        service.update_template(session, template_id, body(name="v2"), ALICE)
    with database.session() as session:
        service.delete_template(session, template_id, ALICE)
    with database.session() as session:
        assert session.get(models.JobTemplate, template_id) is None
        assert session.scalars(select(models.JobTemplateVersion)).all() == []
    assert audit_actions(database)[-1] == ("alice", "template.delete", f"template:{template_id}")


def test_the_database_refuses_a_site_template_with_an_owner(database: Database) -> None:
    template_id = create(database, CAROL, scope="site")
    with pytest.raises(IntegrityError, match="scope_owner"), database.session() as session:
        session.execute(
            text("UPDATE job_templates SET owner = 'alice' WHERE id = :id"), {"id": template_id}
        )


# --- Render, submit, use count --------------------------------------------------------


def test_render_gives_a_job_request(database: Database) -> None:
    template_id = create(database, ALICE)
    with database.session() as session:
        request = service.render(
            session, template_id, ALICE, RenderIn(parameters={"who": "$(id)"}, options={})
        )
    assert request.script == "#!/bin/bash\necho hello '$(id)'\n"
    assert request.time_limit == "10"


class FakeSubmit:
    """Stands in for ``submit.submit_job``; answers as told and records the calls."""

    def __init__(self, answer: SubmitResult | SubmitPreview | Exception) -> None:
        self.answer = answer
        self.calls: list[dict[str, Any]] = []

    def __call__(
        self, ctx: Any, request: JobRequest, who: Principal, **kwargs: Any
    ) -> SubmitResult | SubmitPreview:
        self.calls.append({"request": request, "who": who, **kwargs})
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _result(replayed: bool) -> SubmitResult:
    return SubmitResult(job_id=42, script="x", argv=[], conflicts=[], replayed=replayed)


def _preview() -> SubmitPreview:
    verdict = TestOnlyVerdict(accepted=True, message="ok")
    return SubmitPreview(script="x", argv=[], conflicts=[], verdict=verdict)


def _submit(
    database: Database,
    monkeypatch: pytest.MonkeyPatch,
    answer: SubmitResult | SubmitPreview | Exception,
    template_id: int,
    **kwargs: Any,
) -> FakeSubmit:
    fake = FakeSubmit(answer)
    monkeypatch.setattr(service, "submit_job", fake)
    ctx = cast(SubmitContext, type("Ctx", (), {"database": database})())
    with database.session() as session:
        service.submit(session, ctx, template_id, ALICE, RenderIn(), **kwargs)
    return fake


def use_count(database: Database, template_id: int) -> int:
    with database.session() as session:
        return session.get_one(models.JobTemplate, template_id).use_count


def test_only_real_new_submissions_count_a_use(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    template_id = create(database, ALICE)
    fake = _submit(database, monkeypatch, _result(False), template_id, idempotency_key="k1")
    assert fake.calls[0]["template_id"] == template_id
    assert fake.calls[0]["idempotency_key"] == "k1"
    assert fake.calls[0]["request"].script.endswith("echo hello world\n")
    assert use_count(database, template_id) == 1
    _submit(database, monkeypatch, _result(True), template_id, idempotency_key="k1")
    _submit(database, monkeypatch, _preview(), template_id, dry_run=True)
    assert use_count(database, template_id) == 1
    assert [a for _, a, _ in audit_actions(database)].count("job.submit") == 1


def test_a_refused_submission_is_audited_and_not_counted(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    template_id = create(database, ALICE)
    with pytest.raises(InvalidInput):
        _submit(database, monkeypatch, InvalidInput("no such partition"), template_id)
    assert use_count(database, template_id) == 0
    with database.session() as session:
        entry = session.scalars(
            select(models.AuditEntry).where(models.AuditEntry.action == "job.submit")
        ).one()
    assert entry.result == "refused" and "no such partition" in (entry.detail or "")


# --- Seeding --------------------------------------------------------------------------


def test_seeding_is_idempotent_and_never_overwrites(database: Database) -> None:
    assert service.seed_site_templates(database) == [s.slug for s in SITE_TEMPLATES]
    with database.session() as session:
        items = service.list_templates(session, BOB).items
    assert {t.slug for t in items} == {s.slug for s in SITE_TEMPLATES}
    assert all(t.scope == "site" and t.owner is None for t in items)
    python = next(t for t in items if t.slug == "python-script")
    edited = body(scope="site", name="Python (site edition)")
    with database.session() as session:
        service.update_template(session, python.id, edited, CAROL)
    assert service.seed_site_templates(database) == []
    with database.session() as session:
        assert service.get_template(session, python.id, BOB).name == "Python (site edition)"
        assert len(service.list_templates(session, BOB).items) == len(SITE_TEMPLATES)


def test_seeding_an_unmigrated_database_does_nothing(db_settings: Any) -> None:
    fresh = Database(db_settings)
    try:
        assert service.seed_site_templates(fresh) == []
    finally:
        fresh.dispose()
