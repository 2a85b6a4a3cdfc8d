"""The ``vein2vein`` command: a FlaskGroup, so ``run``, ``routes`` and ``shell`` work too."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import os
import queue
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import FlaskGroup, ScriptInfo
from sqlalchemy import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

import labels
from services.db import UnitOfWork, migrate, privileges
from services.domain.condition import MAX_READINGS, ShipperStatus, parse_csv_upload
from services.domain.custody import Role, SiteKind
from services.domain.errors import DomainError
from services.domain.evidence import decode_key, fingerprint, key_id
from services.operations import (
    admin,
    condition,
    contracts,
    deadlines,
    keys,
    operator,
    passwords,
    products,
    shippers,
    signing,
    sites,
)
from services.operations import audit as audit_ops
from services.operations import notifications as outbox
from services.operations.labels import label_spec
from services.operations.queries import bag_by_din, coi_value

FLASK_COMMANDS = frozenset({"run", "routes", "shell"})  # these need the routes; ours do not


def _create_app() -> Any:
    from services.web import create_app

    command = next((arg for arg in sys.argv[1:] if not arg.startswith("-")), None)
    return create_app(web=command is None or command in FLASK_COMMANDS)


@click.group(cls=FlaskGroup, create_app=_create_app, add_version_option=False)
def main() -> None:
    """vein2vein: chain of identity and custody for autologous CAR-T."""


def _state() -> Any:
    return current_app.extensions["vein2vein"]


@contextmanager
def transaction() -> Iterator[UnitOfWork]:
    """One transaction; a refused request becomes a one-line error and a non-zero exit."""
    try:
        with UnitOfWork(_state().db.session_factory) as uow:
            yield uow
            uow.commit()
    except DomainError as error:
        raise click.ClickException(f"{error.detail} [{error.code}]") from error
    except (OperationalError, ProgrammingError) as error:
        text = str(error.orig)
        if "no such table" in text or "does not exist" in text:
            raise click.ClickException(
                "the database has no vein2vein tables yet: run `vein2vein db upgrade` first"
            ) from error
        raise


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# db


@main.group()
def db() -> None:
    """Database schema (Alembic migrations)."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Migrate the database to the newest schema."""
    url = _state().settings.sqlalchemy_url
    migrate.upgrade(url, revision)
    click.echo(f"database at {_redacted(url)} is at {revision}")


@db.command("check")
def db_check() -> None:
    """Fail when the tables in the code and the migrations differ."""
    migrate.check(_state().settings.sqlalchemy_url)
    click.echo("models and migrations agree")


@db.command("app-role")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the role's password from stdin")
def db_app_role(name: str, password_stdin: bool) -> None:
    """Create the role the application connects as in production, with only the grants it
    needs (PostgreSQL; run it as the owner of the tables, again after every upgrade)."""
    secret = _read_password_stdin() if password_stdin else None
    engine = _state().db.engine
    try:
        with engine.begin() as connection:
            statements = privileges.grant_app_role(connection, name, secret)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    for statement in statements:
        click.echo(statement)
    click.echo(
        f"role {name} may read and append to the record, change no record or identity, and "
        "own nothing; connect the application as it (DATABASE_URL)"
    )


def _redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


# sites, users, tokens


def _choice(enum: type[Any]) -> click.Choice[str]:
    return click.Choice([member.value for member in enum])


@main.group()
def site() -> None:
    """Sites: collection centres, couriers, manufacturing sites, treatment centres."""


@site.command("add")
@click.argument("code")
@click.option("--kind", required=True, type=_choice(SiteKind))
@click.option("--name", required=True)
@click.option("--fin", default=None, help="ISBT 128 facility identification number")
@click.option(
    "--time-zone",
    default="UTC",
    show_default=True,
    help="The site's clock, an IANA time zone such as Europe/London or America/New_York",
)
def site_add(code: str, kind: str, name: str, fin: str | None, time_zone: str) -> None:
    """Add a site (on the admin log, as the command line)."""
    with transaction() as uow:
        row = sites.add_site(
            uow.session,
            actor=None,
            code=code,
            kind=SiteKind(kind),
            name=name,
            fin=fin,
            time_zone=time_zone,
            now=utcnow(),
        )
        click.echo(f"site {row.code} ({row.kind.value}) added, on {row.time_zone} time")


@site.command("set")
@click.argument("code")
@click.option("--name", default=None, help="The site's new name")
@click.option("--time-zone", default=None, help="The site's clock, an IANA time zone")
@click.option(
    "--phone", default=None, help="The number families call (their status page); '' clears it"
)
@click.option(
    "--jurisdiction",
    default=None,
    help="Where the site is, e.g. US (picks a product's post-infusion monitoring periods)",
)
def site_set(
    code: str,
    name: str | None,
    time_zone: str | None,
    phone: str | None,
    jurisdiction: str | None,
) -> None:
    """Change a site's name, time zone, phone or jurisdiction (its code and kind never
    change)."""
    if name is None and time_zone is None and phone is None and jurisdiction is None:
        raise click.UsageError("give --name, --time-zone, --phone or --jurisdiction")
    with transaction() as uow:
        row = sites.change_site(
            uow.session,
            actor=None,
            code=code,
            name=name,
            time_zone=time_zone,
            phone=phone,
            jurisdiction=jurisdiction,
            now=utcnow(),
        )
        said = f", phone {row.phone}" if row.phone else ""
        click.echo(f"site {row.code}: {row.name}, on {row.time_zone} time{said}")


@site.command("signing")
@click.argument("code")
@click.option("--step", required=True, help="receive, release, infuse, or any scan action")
@click.option("--witness/--no-witness", default=False, help="Require a second person too")
@click.option("--off", is_flag=True, help="The step needs no signature at this site")
def site_signing(code: str, step: str, witness: bool, off: bool) -> None:
    """Which steps a site signs (defaults: manufacturing receive and release, treatment
    infuse), and which need a witness."""
    with transaction() as uow:
        steps = operator.set_signing(
            uow.session, site_code=code, step=step, witness=witness, required=not off, now=utcnow()
        )
    shown = ", ".join(f"{name}{' (+ witness)' if w else ''}" for name, w in sorted(steps.items()))
    click.echo(f"{code} signs: {shown or 'nothing'}")


@site.command("contract")
@click.argument("code")
@click.option("--courier", required=True, help="The courier site's code")
@click.option("--end", is_flag=True, help="End the contract")
def site_contract(code: str, courier: str, end: bool) -> None:
    """Contract a courier for a site (or end it): a shipment from the site that names no
    carrier is seen and claimed only by the couriers the site has contracted."""
    with transaction() as uow:
        row = admin.site_by_code(uow.session, code)
        contracts.set_contract(
            uow.session, actor=None, site=row, courier=courier, active=not end, now=utcnow()
        )
        names = [s.code for s in contracts.contracted_couriers(uow.session, row.id or 0)]
    click.echo(f"{code} contracts: {', '.join(names) or 'no courier'}")


@main.group()
def product() -> None:
    """Products: each owned by one manufacturing site, whose QA changes its safety settings."""


@product.command("list")
def product_list() -> None:
    with transaction() as uow:
        rows = products.products(uow.session)
    for row in rows:
        thaw = f"{row.label_thaw_minutes:g} min" if row.label_thaw_minutes else "not confirmed"
        click.echo(f"{row.code:12} owner {row.owner or '(none)':10} label thaw limit {thaw}")


@product.command("add")
@click.argument("code")
@click.option("--name", default="", help="Its name (default: the code)")
@click.option("--owner", default=None, help="The owning manufacturing site's code")
@click.option("--label-thaw-minutes", type=float, default=None, help="The label's thaw limit")
@click.option("--shelf-life-days", type=float, default=None, help="A product bag's shelf life")
def product_add(
    code: str,
    name: str,
    owner: str | None,
    label_thaw_minutes: float | None,
    shelf_life_days: float | None,
) -> None:
    """Set a product up (orders name only products that are set up)."""
    with transaction() as uow:
        products.add_product(
            uow.session,
            code=code,
            name=name,
            owner=owner,
            label_thaw_minutes=label_thaw_minutes,
            shelf_life_days=shelf_life_days,
            now=utcnow(),
        )
    click.echo(f"product {code} set up" + (f", owned by {owner}" if owner else ""))


@product.command("owner")
@click.argument("code")
@click.option("--site", "owner", required=True, help="The owning manufacturing site's code")
def product_owner(code: str, owner: str) -> None:
    """Name the product's owning manufacturing site: its QA alone changes the product's
    turnaround policy, alarm rule and thaw limit."""
    with transaction() as uow:
        products.set_owner(uow.session, code=code, owner=owner, now=utcnow())
    click.echo(f"{code} is owned by {owner}: its QA changes the product's settings")


@main.group()
def user() -> None:
    """Users: each acts for one site in one role."""


@user.command("add")
@click.argument("email")
@click.option("--role", required=True, type=_choice(Role))
@click.option("--site", "site_code", required=True)
@click.option("--name", default=None, help="Printed name (defaults to the e-mail's local part)")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read a web login password from stdin (without it the user has API tokens only)",
)
def user_add(email: str, role: str, site_code: str, name: str | None, password_stdin: bool) -> None:
    """Add a user."""
    secret = _read_password_stdin() if password_stdin else None
    with transaction() as uow:
        row = operator.add_user(
            uow.session,
            email=email,
            role=Role(role),
            site_code=site_code,
            name=name,
            password=secret,
            now=utcnow(),
        )
        click.echo(f"user {row.email} ({row.role.value} at {site_code}) added")


@user.command("password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin")
def user_password(email: str, password_stdin: bool) -> None:
    """Set a user's web login password; their open sessions end, blocked clients are let in."""
    if password_stdin:
        secret = _read_password_stdin()
    else:
        secret = click.prompt("New password", hide_input=True, confirmation_prompt=True)
    with transaction() as uow:
        row = operator.set_password(uow.session, email=email, password=secret, now=utcnow())
        click.echo(f"password of {row.email} set")


@user.command("deactivate")
@click.argument("email")
def user_deactivate(email: str) -> None:
    """Deactivate a user: their sessions and API tokens stop working at once."""
    with transaction() as uow:
        row = operator.set_active(uow.session, email=email, active=False, now=utcnow())
        click.echo(f"user {row.email} deactivated")


@user.command("activate")
@click.argument("email")
def user_activate(email: str) -> None:
    """Activate a deactivated user again."""
    with transaction() as uow:
        row = operator.set_active(uow.session, email=email, active=True, now=utcnow())
        click.echo(f"user {row.email} active")


def _read_password_stdin() -> str:
    secret = sys.stdin.readline().rstrip("\r\n")
    if not secret:
        raise click.UsageError("--password-stdin: no password on stdin")
    return secret


@main.group()
def token() -> None:
    """API tokens for scanners and integrations."""


@token.command("create")
@click.argument("email")
@click.option("--name", default="default", help="What the token is for, e.g. scanner-3")
@click.option("--days", type=click.IntRange(min=1), default=None, help="Expire after N days")
def token_create(email: str, name: str, days: int | None) -> None:
    """Print a new API token, alone on stdout. It is stored only as a hash."""
    expires = utcnow() + dt.timedelta(days=days) if days else None
    with transaction() as uow:
        _row, secret = admin.issue_token(
            uow.session, by=None, email=email, name=name, expires_at=expires, now=utcnow()
        )
    click.echo(secret)


@token.command("list")
@click.argument("email")
def token_list(email: str) -> None:
    """A user's tokens: name, prefix, created, expiry, revocation (never the token itself)."""
    with transaction() as uow:
        rows = admin.tokens_of(uow.session, email=email)
    for row in rows:
        state = (
            f"revoked {row.revoked_at:%Y-%m-%d %H:%M}"
            if row.revoked_at
            else f"expires {row.expires_at:%Y-%m-%d}"
            if row.expires_at
            else "active"
        )
        click.echo(f"{row.id:6}  {row.name:20} {row.prefix}...  {row.created_at:%Y-%m-%d}  {state}")


@token.command("revoke")
@click.argument("email")
@click.option("--name", required=True, help="Revoke the user's tokens with this name")
def token_revoke(email: str, name: str) -> None:
    """Revoke a user's tokens by name; they stop working at once."""
    with transaction() as uow:
        count = admin.revoke_tokens(uow.session, by=None, email=email, name=name, now=utcnow())
    click.echo(f"{count} tokens revoked")


@main.command("label")
@click.argument("din")
@click.option("--format", "fmt", type=click.Choice(["png", "svg", "pdf", "zpl"]), default="png")
@click.option("--size", type=click.Choice(sorted(labels.SIZES)), default="2x4in")
@click.option("--dpi", type=int, default=203, show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), required=True)
def label_command(din: str, fmt: str, size: str, dpi: int, output: str) -> None:
    """Render a bag's label to a file (the same label the API serves)."""
    with transaction() as uow:
        unit, order = bag_by_din(uow.session, din)
        spec = label_spec(uow.session, unit, order)
    try:
        content = labels.render(spec, fmt, size=labels.label_size(size), dpi=dpi)  # type: ignore[arg-type]
    except labels.LabelError as error:
        raise click.ClickException(str(error)) from error
    Path(output).write_bytes(content)
    click.echo(f"label of {unit.din} written to {output} ({len(content)} bytes)")


@main.command("sweep")
def sweep_command() -> None:
    """One deadline sweep now: flag legs at risk, late, or due for escalation."""
    with transaction() as uow:
        result = deadlines.sweep(uow.session, now=utcnow())
    click.echo(f"sweep: {result}")


@main.group()
def audit() -> None:
    """The tamper-evident record: verify every chain, take a checkpoint."""


@audit.command("verify", with_appcontext=False)
@click.option(
    "--bundle",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Verify an evidence bundle on its own, without any database",
)
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    help="A trusted key (base64), obtained apart from the bundle; repeatable",
)
@click.option(
    "--witness",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Check the database against a witness's copy of a checkpoint",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=None,
    help="Processes that check the chains (default: one per core)",
)
def audit_verify(
    bundle: Path | None, public_keys: tuple[str, ...], witness: Path | None, jobs: int | None
) -> None:
    """Check every chain, head, checkpoint and signature; exit 1 naming the first broken record.
    Checkpoints must be signed by keys the settings trust (AUDIT_TRUSTED_KEYS, the key file).
    With --bundle: an evidence bundle, no database needed (exit 0 verified, 1 broken, 2 not
    checked, 3 origin unproven: no trusted key signed it). With --witness: the database
    against a checkpoint kept outside it."""
    if bundle is not None:
        _verify_bundle(bundle, public_keys)
        return
    app = click.get_current_context().ensure_object(ScriptInfo).load_app()
    with app.app_context():
        if witness is not None:
            _verify_witness(witness)
            return
        _verify_database(jobs)


def _verify_bundle(path: Path, public_keys: tuple[str, ...]) -> None:
    """As ``python -m services.bundle``, trusting also what the settings trust (read without
    the app or a database: a bundle verifies where neither is)."""
    from services import bundle as offline
    from services.domain.evidence import parse_keys

    try:
        trusted = parse_keys(",".join(public_keys), source="--public-key")
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--public-key") from error
    trusted += _configured_keys()
    try:
        report = offline.check(path, trusted)
    except OSError as error:
        raise click.ClickException(f"cannot read {path}: {error}") from error
    status, out, err = offline.outcome(report)
    for line in out:
        click.echo(line)
    for line in err:
        click.echo(line, err=True)
    if status:
        raise SystemExit(status)


def _configured_keys() -> list[bytes]:
    """AUDIT_TRUSTED_KEYS and the signing key file's public half, as the settings say; with
    settings that do not load, AUDIT_TRUSTED_KEYS from the environment alone (said so)."""
    from services import bundle as offline
    from services.config import Settings

    try:
        settings = Settings()
    except ValueError as error:
        click.echo(f"settings not loaded ({error}); trusting --public-key and the environment's "
                   f"{offline.TRUSTED_KEYS_VARIABLE} only", err=True)  # fmt: skip
        try:
            return offline.configured_keys()
        except ValueError as bad:
            raise click.ClickException(str(bad)) from bad
    try:
        trust = keys.installation_trust(
            key_path=settings.signing_key_path, configured=settings.trusted_public_keys
        )
    except DomainError as error:
        raise click.ClickException(f"{error.detail} [{error.code}]") from error
    return list(trust.keys.values())


def _trust() -> keys.Trust:
    """The keys the settings trust, and the installation's key (the app's settings)."""
    settings = _state().settings
    try:
        return keys.installation_trust(
            key_path=settings.signing_key_path, configured=settings.trusted_public_keys
        )
    except DomainError as error:
        raise click.ClickException(f"{error.detail} [{error.code}]") from error


def _verify_witness(path: Path) -> None:
    from services.operations import evidence

    try:
        copy = json.loads(path.read_text())
    except ValueError as error:
        raise click.ClickException(f"{path} is not JSON: {error}") from error
    with transaction() as uow:
        finding = evidence.verify_witness(uow.session, copy, trust=_trust())
    if finding is not None:
        click.echo(f"BROKEN: {finding}", err=True)
        raise SystemExit(1)
    click.echo(f"verified against the witnessed checkpoint {copy.get('data', copy).get('id')}")


def _verify_database(jobs: int | None) -> None:
    with transaction() as uow:
        total = audit_ops.record_count(uow.session)
        heads = audit_ops.chain_heads(uow.session)
    if jobs is None:  # one per core; below ~20,000 records a second costs more than it saves
        jobs = max(1, min(os.cpu_count() or 1, total // 20_000 + 1))
    with click.progressbar(length=total, label="verifying", file=sys.stderr, show_pos=True) as bar:
        if jobs == 1:
            done = 0

            def progress(checked: int) -> None:
                nonlocal done
                bar.update(checked - done)
                done = checked

            with transaction() as uow:
                passes = [audit_ops.verify_chains(uow.session, progress=progress)]
        else:
            passes = _verify_in_parts(jobs, bar)
    with transaction() as uow:
        report = audit_ops.conclude(uow.session, passes, heads=heads, trust=_trust())
    summary = (
        f"{report.records} records in {report.chains} chains, {report.checkpoints} "
        f"checkpoints, {report.signatures} signatures"
    )
    if report.finding is not None:
        click.echo(f"BROKEN: {report.finding}", err=True)
        click.echo(f"checked before the break: {summary}", err=True)
        raise SystemExit(1)
    click.echo(f"verified: {summary}")


def _verify_in_parts(jobs: int, bar: Any) -> list[audit_ops.ChainPass]:
    """The chains split over ``jobs`` processes by order id (each its own connection and
    transaction): hashing is CPU work, and one process uses one core."""
    context = multiprocessing.get_context("fork")
    counters = [context.Value("q", 0) for _ in range(jobs)]
    results: Any = context.Queue()
    state = _state()
    workers = [
        context.Process(
            target=_verify_part,
            args=(state.settings, part, jobs, counters[part], results),
            daemon=True,
        )
        for part in range(jobs)
    ]
    for worker in workers:
        worker.start()
    passes: dict[int, audit_ops.ChainPass] = {}
    shown = 0
    try:
        while len(passes) < jobs:
            try:
                part, outcome = results.get(timeout=0.2)
            except queue.Empty:
                if any(w.exitcode not in (None, 0) for w in workers):
                    raise click.ClickException("a verifying process died") from None
            else:
                if isinstance(outcome, str):
                    raise click.ClickException(f"part {part + 1} of {jobs} failed: {outcome}")
                passes[part] = outcome
            checked = sum(counter.value for counter in counters)
            bar.update(checked - shown)
            shown = checked
    finally:
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.terminate()
    return [passes[part] for part in range(jobs)]


def _verify_part(settings: Any, part: int, parts: int, counter: Any, results: Any) -> None:
    """One process's part of a verify. Forked: the parent's pooled connections are left to
    the parent (dispose without closing them), and this part opens its own."""
    from services.db import Database

    try:
        _state().db.engine.dispose(close=False)
        database = Database.from_url(
            settings.sqlalchemy_url, sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms
        )

        def progress(checked: int) -> None:
            counter.value = checked

        with UnitOfWork(database.session_factory) as uow:
            one = audit_ops.verify_chains(uow.session, progress=progress, part=part, parts=parts)
        database.engine.dispose()
        results.put((part, one))
    except Exception as error:
        results.put((part, f"{type(error).__name__}: {error}"))


@audit.command("export")
@click.argument("coi")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None)
def audit_export(coi: str, output: str | None) -> None:
    """The order's evidence bundle (JSON), to a file or standard output."""
    from services.operations import evidence

    trust = _trust()
    with transaction() as uow:
        body = evidence.bundle(
            uow.session, actor=None, coi=coi_value(coi), now=utcnow(), trust=trust
        )
    text = json.dumps(body, indent=2, sort_keys=True) + "\n"
    if trust.signer is None:
        click.echo("no signing key: the bundle is unsigned (vein2vein keys init)", err=True)
    if output:
        Path(output).write_text(text)
        signed = f"signed by key {trust.signer.key_id}" if trust.signer else "unsigned"
        click.echo(
            f"{len(body['chain']['records'])} records, {len(body['checkpoints'])} signed "
            f"checkpoints written to {output} ({signed})",
            err=True,
        )
    else:
        click.echo(text, nl=False)


@audit.command("checkpoint")
def audit_checkpoint() -> None:
    """Record every chain's head now (the beat does this every CHECKPOINT_INTERVAL_SECONDS)."""
    with transaction() as uow:
        signer = keys.load_signer(_state().settings.signing_key_path)
        row = audit_ops.checkpoint(uow.session, now=utcnow(), signer=signer)
        if signer is None:
            click.echo("no signing key: the checkpoint is unsigned (vein2vein keys init)", err=True)
        click.echo(f"checkpoint {row.id}: {len(row.heads)} chains, {row.records} records")


@main.group()
def sla() -> None:
    """Turnaround policies per product (versioned: open legs keep their limits)."""


@sla.command("show")
@click.argument("product")
def sla_show(product: str) -> None:
    """The product's current policy."""
    with transaction() as uow:
        policy = deadlines.current_policy(uow.session, product)
    click.echo(
        f"{policy.product} version {policy.version}: at risk at {policy.at_risk:.0%}, "
        f"escalate {policy.escalate_after / 3600:g} h after due, "
        f"vein-to-vein target {policy.target_days:g} days"
    )
    for leg, seconds in policy.limits.items():
        click.echo(f"  {leg.value:28} {seconds / 3600:8.2f} h")


def _signed_by(options: Any) -> Any:
    """The options of a change QA of a product's owning site signs: who, why, the password."""
    options = click.option(
        "--password-stdin", is_flag=True, help="Read the signer's password from stdin"
    )(options)
    options = click.option("--reason", required=True, help="Why the setting changes")(options)
    return click.option(
        "--by", "signer", required=True, metavar="EMAIL", help="QA of the product's owner"
    )(options)


def _signer(session: Any, email: str, password_stdin: bool) -> tuple[Any, Any]:
    """The signing QA user as an actor, authenticated (their password, prompted or on stdin)."""
    secret = (
        _read_password_stdin()
        if password_stdin
        else click.prompt(f"Password of {email}", hide_input=True)
    )
    actor = admin.actor_by_email(session, email)
    signers = signing.authenticate_signers(
        session,
        actor=actor,
        site_id=actor.site_id,
        password=secret,
        witness_email=None,
        witness_password=None,
        now=utcnow(),
        policy=passwords.LoginPolicy(),
    )
    return actor, signers


@sla.command("set")
@click.argument("product")
@click.option("--leg", "legs", multiple=True, metavar="LEG=HOURS", help="A leg's limit")
@click.option("--at-risk", type=float, default=None, help="Fraction of the limit, e.g. 0.75")
@click.option("--escalate-after-hours", type=float, default=None)
@click.option("--target-days", type=float, default=None)
@_signed_by
def sla_set(
    product: str,
    legs: tuple[str, ...],
    at_risk: float | None,
    escalate_after_hours: float | None,
    target_days: float | None,
    signer: str,
    reason: str,
    password_stdin: bool,
) -> None:
    """Add a new version of the product's policy: QA of its owning site (--by), signed with
    their password, with a reason."""
    limits = {}
    for item in legs:
        name, _, hours = item.partition("=")
        try:
            limits[name.strip()] = float(hours) * 3600
        except ValueError as error:
            raise click.BadParameter(f"{item!r}: write LEG=HOURS") from error
    with transaction() as uow:
        actor, signers = _signer(uow.session, signer, password_stdin)
        policy = products.change_policy(
            uow.session,
            actor=actor,
            product=product,
            limits=limits,
            at_risk=at_risk,
            escalate_after=escalate_after_hours * 3600 if escalate_after_hours else None,
            target_days=target_days,
            reason=reason,
            signers=signers,
            now=utcnow(),
        )
    click.echo(f"{product}: policy version {policy.version} in force for legs opened from now")


@main.group()
def notifications() -> None:
    """The notification outbox: dead letters, replays, delivery by hand."""


@notifications.command("dead")
def notifications_dead() -> None:
    """List dead letters: notifications that gave up, with their last error."""
    with transaction() as uow:
        rows = outbox.dead_letters(uow.session)
        for row in rows:
            click.echo(
                f"{row.id:8}  {row.channel.value:8} {row.target[:40]:40} {row.kind:20} "
                f"attempts={row.attempts}  {row.last_error or ''}"
            )
    click.echo(f"{len(rows)} dead letters")


@notifications.command("replay")
@click.argument("ids", nargs=-1, type=int)
@click.option("--all", "replay_all", is_flag=True, help="Every dead letter")
@click.option("--reason", required=True, help="Why they are sent again (kept on record)")
@click.option("--by", "email", required=True, help="Who replays them (a user's e-mail)")
def notifications_replay(ids: tuple[int, ...], replay_all: bool, reason: str, email: str) -> None:
    """Send dead letters again. Each replay is recorded: who, when, why, what it was."""
    if bool(ids) == replay_all:
        raise click.UsageError("name the notification ids, or --all")
    with transaction() as uow:
        replayed = outbox.replay_dead(
            uow.session, ids=list(ids) or None, email=email, reason=reason, now=utcnow()
        )
    click.echo(f"{len(replayed)} notifications queued again; the dispatcher sends them shortly")


@notifications.command("deliver")
def notifications_deliver() -> None:
    """Deliver every due notification now, in this process (no broker or worker needed)."""
    from workers.tasks import deliver_now

    state = _state()
    counts: dict[str, int] = {}
    while True:
        with transaction() as uow:
            claims = outbox.claim_due(
                uow.session,
                now=utcnow(),
                lease=dt.timedelta(seconds=state.settings.notify_claim_seconds),
                limit=state.settings.dispatch_batch,
            )
        if not claims:
            break
        for notification_id, token in claims:
            result = deliver_now(notification_id, token, state.db, state.settings)
            counts[result] = counts.get(result, 0) + 1
        click.echo(", ".join(f"{n} {result}" for result, n in sorted(counts.items())))
    click.echo("nothing more is due")


@notifications.command("digest")
def notifications_digest() -> None:
    """Fold the progress news held for digest subscribers into their daily message now (the
    beat does it after DIGEST_HOUR on each subscriber's site's clock); deliver it with
    `notifications deliver` or the worker."""
    with transaction() as uow:
        made = outbox.fold_digests(uow.session, now=utcnow(), hour=_state().settings.digest_hour)
    click.echo(f"{len(made)} digest(s) made")


@main.command("demo")
def demo_command() -> None:
    """Idempotent demo data: sites, users, orders in every stage; prints the logins."""
    from services.cli.demo import load_demo

    if _state().settings.app_env == "production":
        raise click.UsageError("the demo sets known passwords; it is not for APP_ENV=production")
    load_demo(transaction, echo=click.echo)


# the chain of condition


@main.group()
def readings() -> None:
    """Data loggers' temperature readings of shipments."""


@readings.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--shipment", required=True, help="The shipment: SHP-00000012 or 12")
@click.option("--device", default=None, help="The logger, when the file has no device_id column")
@click.option("--by", "email", default=None, help="Who imports it (default: who opened it)")
def readings_import(file: Path, shipment: str, device: str | None, email: str | None) -> None:
    """Import a logger's CSV file: a header naming at, value, unit (and device_id), then one
    reading per line ("2026-12-01T10:30:00Z,-182.5,C"). A bad line refuses the whole file,
    naming each line; the same file twice imports once."""
    data = file.read_bytes()
    if len(data) > 64 * MAX_READINGS * 4:
        raise click.ClickException(f"{file} is too large for {MAX_READINGS} readings: split it")
    now = utcnow()
    click.echo(f"checking {file.name} ...", err=True)
    try:
        parsed = parse_csv_upload(data, device_id=device, now=now)
    except DomainError as error:
        raise click.ClickException(f"{error.detail} [{error.code}]") from error
    click.echo(f"{len(parsed)} readings checked; storing ...", err=True)
    with transaction() as uow:
        actor = condition.command_line_importer(uow.session, shipment, email)
        result = condition.import_readings(
            uow.session,
            actor=actor,
            shipment=shipment,
            readings=parsed,
            original=data,
            filename=file.name,
            media_type="text/csv",
            now=now,
            entered=condition.COMMAND_LINE,
        )
        if result.duplicate:
            click.echo(f"{file.name} was imported before (SHA-256 {result.file.sha256}): no change")
            return
        click.echo(
            f"{result.file.readings} readings ({result.file.new_readings} new) from {file.name}, "
            f"SHA-256 {result.file.sha256}, sealed in the chain as imported by {actor.email}"
        )
        for alarm in result.alarms:
            click.echo(f"ALARM {alarm.kind.value}: {alarm.description}")
        if result.held:
            click.echo(f"ON HOLD until QA disposes of them: {', '.join(result.held)}")


@main.group()
def shipper() -> None:
    """Dry-vapour shippers: registered, requalified, put in or out of service."""


@shipper.command("add")
@click.argument("serial")
@click.option("--site", "site_code", required=True, help="Its home site")
@click.option("--model", required=True)
@click.option("--hold-time-hours", type=float, required=True)
@click.option("--qualified-until", type=click.DateTime(["%Y-%m-%d"]), required=True)
def shipper_add(
    serial: str, site_code: str, model: str, hold_time_hours: float, qualified_until: dt.datetime
) -> None:
    """Register a shipper, in service (qualified until the end of the day given, UTC)."""
    with transaction() as uow:
        row = shippers.register_shipper(
            uow.session,
            actor=None,
            site=admin.site_by_code(uow.session, site_code),
            serial=serial,
            model=model,
            hold_time_hours=hold_time_hours,
            qualified_until=_end_of_day(qualified_until),
            now=utcnow(),
        )
        click.echo(
            f"shipper {row.serial}: in service, qualified until {row.qualified_until:%Y-%m-%d}"
        )


def _end_of_day(day: dt.datetime) -> dt.datetime:
    return day.replace(hour=23, minute=59, second=59, tzinfo=dt.UTC)


@shipper.command("list")
def shipper_list() -> None:
    """Every shipper with its status."""
    with transaction() as uow:
        rows = shippers.all_shippers(uow.session)
        for row in rows:
            click.echo(
                f"{row.serial:20} {row.status.value:12} qualified until "
                f"{row.qualified_until:%Y-%m-%d}  {row.hold_time_hours:g} h  {row.model}"
                + (f"  ({row.status_reason})" if row.status_reason else "")
            )
    click.echo(f"{len(rows)} shippers")


@shipper.command("status")
@click.argument("serial")
@click.option(
    "--set",
    "status",
    type=click.Choice(["in_service", "quarantined", "retired"]),
    default=None,
)
@click.option("--qualified-until", type=click.DateTime(["%Y-%m-%d"]), default=None)
@click.option("--reason", required=True, help="Why (kept in the admin log)")
def shipper_status(
    serial: str, status: str | None, qualified_until: dt.datetime | None, reason: str
) -> None:
    """Requalify a shipper or put it in or out of service."""
    with transaction() as uow:
        row = shippers.change_shipper(
            uow.session,
            actor=None,
            serial=serial,
            status=ShipperStatus(status) if status else None,
            reason=reason,
            qualified_until=_end_of_day(qualified_until) if qualified_until else None,
            now=utcnow(),
        )
        until = f"{row.qualified_until:%Y-%m-%d}"
        click.echo(f"shipper {row.serial}: {row.status.value}, qualified until {until}")


@main.group()
def alarm() -> None:
    """Alarm rules per product (versioned, like turnaround policies)."""


@alarm.command("show")
@click.argument("product")
def alarm_show(product: str) -> None:
    with transaction() as uow:
        rule = condition.current_rule(uow.session, product)
    click.echo(
        f"{product} alarm rule version {rule.version}: above {rule.limit_c:g} °C for "
        f"{rule.continuous_minutes:g} min on end or {rule.cumulative_minutes:g} min in all; any "
        f"reading above {rule.instant_limit_c:g} °C; no reading for {rule.gap_minutes:g} min"
    )


@alarm.command("set")
@click.argument("product")
@click.option("--limit-c", type=float, default=None)
@click.option("--instant-limit-c", type=float, default=None)
@click.option("--continuous-minutes", type=float, default=None)
@click.option("--cumulative-minutes", type=float, default=None)
@click.option("--gap-minutes", type=float, default=None)
@_signed_by
def alarm_set(
    product: str, signer: str, reason: str, password_stdin: bool, **values: float | None
) -> None:
    """Add a new version of the product's alarm rule (values left out are kept): QA of its
    owning site (--by), signed with their password, with a reason, within clinical bounds."""
    with transaction() as uow:
        actor, signers = _signer(uow.session, signer, password_stdin)
        rule = products.change_alarm_rule(
            uow.session,
            actor=actor,
            product=product,
            reason=reason,
            signers=signers,
            now=utcnow(),
            **values,
        )
    click.echo(f"{product}: alarm rule version {rule.version} in force for imports from now")


@main.group()
def epcis() -> None:
    """GS1 EPCIS 2.0: the custody record in the industry's interchange format."""


@epcis.command("export")
@click.argument("coi")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None)
def epcis_export(coi: str, output: str | None) -> None:
    """The order's EPCISDocument (JSON-LD), to a file or to standard output."""
    from services.domain.epcis import Uris
    from services.operations import epcis as epcis_ops

    with transaction() as uow:
        body = epcis_ops.export_order(
            uow.session,
            actor=None,
            coi=coi_value(coi),
            uris=Uris(_state().settings.epcis_base_uri.rstrip("/")),
            now=utcnow(),
        )
    text = json.dumps(body, indent=2) + "\n"
    if output:
        Path(output).write_text(text)
        click.echo(f"{len(body['epcisBody']['eventList'])} events written to {output}", err=True)
    else:
        click.echo(text, nl=False)


@main.group(name="keys")
def keys_group() -> None:
    """The installation's checkpoint-signing key (Ed25519)."""


@keys_group.command("init")
@click.option(
    "--rotate", is_flag=True, help="Replace an existing key (old checkpoints still verify)"
)
@click.option(
    "--if-missing", is_flag=True, help="Keep an existing key and say so (for set-up scripts)"
)
def keys_init(rotate: bool, if_missing: bool) -> None:
    """Make the key that signs checkpoints, at SIGNING_KEY_PATH (mode 0600)."""
    path = _state().settings.signing_key_path
    assert path is not None
    if if_missing and not rotate and path.exists():
        signer = keys.load_signer(path)
        assert signer is not None
        click.echo(f"checkpoints are signed with key {signer.key_id} ({path})")
        return
    try:
        previous = keys.load_signer(path) if rotate else None
    except DomainError:
        previous = None  # an unreadable key is replaced; the log says a key was made
    with transaction() as uow:  # the key and its entry in the admin log, or the command fails
        signer = keys.init_key(path, replace=rotate)
        operator.key_made(
            uow.session,
            key_id=signer.key_id,
            public_key=signer.public_key,
            previous=previous.key_id if previous else None,
            now=utcnow(),
        )
    click.echo(f"key {signer.key_id} written to {path}")
    click.echo(f"fingerprint (SHA-256): {fingerprint(decode_key(signer.public_key))}")
    click.echo(f"public key (publish it to witnesses and auditors): {signer.public_key}")
    if previous is not None and previous.key_id != signer.key_id:
        click.echo(
            f"the old key {previous.key_id} stays valid for what it signed only while it is "
            f"trusted: add it to AUDIT_TRUSTED_KEYS ({previous.public_key})",
            err=True,
        )


@keys_group.command("show")
def keys_show() -> None:
    """The installation's key and its fingerprint, and every key that has signed a checkpoint
    (trusted: named by AUDIT_TRUSTED_KEYS or the key file; others are a finding of verify)."""
    trust = _trust()
    signer = trust.signer
    if signer is None:
        click.echo("no signing key yet: vein2vein keys init")
    else:
        click.echo(f"current key {signer.key_id}: {signer.public_key}")
        click.echo(f"  fingerprint (SHA-256): {fingerprint(decode_key(signer.public_key))}")
    for raw in trust.keys.values():
        if signer is None or raw != decode_key(signer.public_key):
            click.echo(f"trusted (AUDIT_TRUSTED_KEYS): {key_id(raw)}  {fingerprint(raw)}")
    with transaction() as uow:
        strangers = {row.key_id for row in keys.untrusted_keys(uow.session, trust)}
        for row in keys.public_keys(uow.session):
            since = f"{row.first_used_at:%Y-%m-%d}"
            trusted = "NOT TRUSTED" if row.key_id in strangers else "trusted"
            click.echo(
                f"  {row.key_id}  {row.algorithm}  since {since}  {trusted}  {row.public_key}"
            )


@main.group(name="webhooks")
def webhooks_group() -> None:
    """Webhook subscriptions' signing secrets (sealed under WEBHOOK_SECRET_KEY)."""


@webhooks_group.command("seal-secrets")
def webhooks_seal_secrets() -> None:
    """Seal every signing secret kept in clear, or under a key that is no longer the first of
    WEBHOOK_SECRET_KEY (after a rotation): each is then opened with the first key only."""
    from services.domain.webhook_secrets import SecretUnreadable
    from services.operations.subscriptions import seal_secrets

    try:
        with transaction() as uow:
            count = seal_secrets(uow.session, secret_keys=_state().settings.webhook_secret_keys)
    except SecretUnreadable as error:
        raise click.ClickException(f"{error} Nothing was changed.") from error
    click.echo(f"{count} webhook secret(s) sealed")


@main.command("report")
@click.argument("coi")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), required=True)
def report_command(coi: str, output: str) -> None:
    """The order's chain-of-custody report as PDF (the same record gives the same bytes)."""
    from services.documents import report_pdf
    from services.operations import report

    signer = _trust().signer
    with transaction() as uow:
        data = report.report_data(
            uow.session,
            actor=None,
            coi=coi_value(coi),
            signing_key=signer.public_key if signer else None,
        )
    content = report_pdf.render(data)
    Path(output).write_bytes(content)
    click.echo(f"report of {data.coi} written to {output} ({len(content)} bytes)")
