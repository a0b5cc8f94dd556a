"""The console's actions (POST, each CSRF-checked by :meth:`Console.route`): creating a
rollout from an upload, the administrator's commands, retrying a device, acknowledging
and reviving effects, and the token sign-in of ``certflow serve``.

An action is answered by a redirect to the page that shows its result (303), so that
reloading that page repeats nothing. An import is applied only if the devices it would
cut off are those its confirmation page listed (the preview's list, by its digest).
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from certflow import certs
from certflow.core import commands as c
from certflow.core.errors import InvalidInput
from certflow.core.policy import CertificateKind
from certflow.store import SqlStore, check_rollout_name
from certflow.web import _words
from certflow.web._app import Console
from certflow.web._pages import ACTIONS, NAMED, digest
from certflow.web._security import SESSION_COOKIE, check_csrf, cookie_path
from certflow.web._uploads import NEW_ROLLOUT_LIMITS, Form, Upload, read_device_list, read_form

__all__ = ["routes"]

_MODES = {
    certs.ImportMode.PROCEED_TO_IMPORT: "Proceed to Import",
    certs.ImportMode.DISTRIBUTE_ROOT_FIRST: "Distribute Root Certificate first",
}


def _posted(form: Form | None) -> Form:
    if form is None:  # pragma: no cover - route() reads the form of every POST
        raise InvalidInput("a form was expected")
    return form


def _files(form: Form, field: str, what: str) -> list[Upload]:
    found = form.files.get(field, [])
    if not found:
        raise InvalidInput(f"{what}: no file chosen")
    return found


def _hosts(text: str) -> tuple[str, ...]:
    hosts = tuple(part for part in re.split(r"[\s,]+", text) if part)
    if not hosts:
        raise InvalidInput(
            "hosts: give every address clients use (the host name and the NAT address)"
        )
    return hosts


async def create_rollout(
    console: Console, request: Request, user: str, form: Form | None
) -> Response:
    """Check the upload as ``certflow cert check`` does; create the rollout if asked and
    the checks found no error. The password is never put back into the page."""
    form = _posted(form)
    name = check_rollout_name(form.get("name").strip())
    hosts = _hosts(form.get("hosts"))
    kind = form.get("kind", CertificateKind.MDM_SERVER.value)
    try:
        certificate_kind = CertificateKind(kind)
    except ValueError:
        raise InvalidInput(f"kind {kind!r} is not a certificate kind") from None
    material_files = _files(form, "material", "certificate material")
    existing_file = _files(form, "existing", "the current certificate")[0]
    devices = read_device_list(_files(form, "devices", "the device list")[0])
    password = form.get("password") or None
    material = certs.load(
        *[upload.data for upload in material_files],
        password=password,
        names=[upload.filename or f"file {i}" for i, upload in enumerate(material_files, 1)],
    )
    existing = certs.load(existing_file.data, names=[existing_file.filename or "current"])
    now = console.now()
    report = certs.check(material, hosts=hosts, now=now)
    context: dict[str, Any] = {
        "name": name,
        "hosts": "\n".join(hosts),
        "kind": certificate_kind.value,
        "kinds": [k.value for k in CertificateKind],
        "report": report,
        "findings": _findings(report),
        "mode": None if report.recommended_mode is None else _MODES[report.recommended_mode],
        "devices": len(devices),
    }
    if form.get("step") != "create" or not report.ok:
        return console.render(request, "new.html", user, context, 200 if report.ok else 422)
    rollout = certs.rollout_for(
        material, existing, devices, now=now, kind=certificate_kind, hosts=hosts
    )
    info = await console.store.run(lambda store: store.create(name, rollout))
    context.update(info=info, public=rollout.plan.root_publicly_trusted)
    return console.render(request, "created.html", user, context, 201)


def _findings(report: certs.Report) -> list[certs.Finding]:
    order = {certs.Severity.ERROR: 0, certs.Severity.WARNING: 1, certs.Severity.INFO: 2}
    return sorted(report.findings, key=lambda finding: order[finding.severity])


async def command(console: Console, request: Request, user: str, form: Form | None) -> Response:
    """One of the rollout's actions; an import only as its confirmation page listed it."""
    form = _posted(form)
    name = check_rollout_name(request.path_params["name"])
    action = request.path_params["action"]
    if action not in ACTIONS:
        raise InvalidInput(f"{action!r} is not an action; one of {', '.join(ACTIONS)}")
    chosen = ACTIONS[action]
    now = console.now()
    if action in ("proceed", "import-now"):
        shown = form.get("digest")

        def checked(store: SqlStore) -> Any:
            seen = store.preview(name, chosen, now)
            if seen.refusal is not None:
                raise seen.refusal
            if digest(seen.cut_off) != shown:
                return seen
            store.apply(name, chosen, now)
            return None

        changed = await console.store.run(checked)
        if changed is not None:
            # Devices reported meanwhile: confirm again with the engine's list as it is now.
            cut_off = changed.cut_off
            context = {
                "name": name,
                "action": action,
                "button": _words.BUTTONS[type(chosen).__name__],
                "preview": changed,
                "cut_off": cut_off[:NAMED],
                "cut_off_count": len(cut_off),
                "digest": digest(cut_off),
                "effects": [_words.effect_text(effect) for effect in changed.effects],
                "changed": True,
            }
            return console.render(request, "confirm.html", user, context, 409)
    else:
        await console.store.run(lambda store: store.apply(name, chosen, now))
    return console.redirect(request, "details", {"done": action}, name=name)


async def retry(console: Console, request: Request, user: str, form: Form | None) -> Response:
    """Retry one failed device, back to the page of the table it was on."""
    form = _posted(form)
    name = check_rollout_name(request.path_params["name"])
    device = form.get("device_id")
    now = console.now()
    await console.store.run(lambda store: store.apply(name, c.Retry(device), now))
    back = {key: form.get(key) for key in ("state", "prefix", "after")}
    return console.redirect(request, "details", {**back, "done": "retry"}, name=name)


async def outbox(console: Console, request: Request, user: str, form: Form | None) -> Response:
    """Acknowledge a pending effect (the host performed it) or revive a dead one."""
    form = _posted(form)
    name = check_rollout_name(request.path_params["name"])
    what = request.path_params["what"]
    ids = form.fields.get("effect_id", [])
    if not ids or any(not i.startswith(f"{name}:") for i in ids):
        raise InvalidInput(f"effects of rollout {name!r} to {what}: none given")
    now = console.now()
    if what == "acknowledge":
        await console.store.run(lambda store: store.acknowledge(ids, now))
    elif what == "revive":
        await console.store.run(lambda store: store.revive(ids))
    else:
        raise InvalidInput(f"{what!r}: effects are acknowledged or revived")
    return console.redirect(request, "effects", {"show": form.get("show", "pending")}, name=name)


# --- the token sign-in of `certflow serve` ------------------------------------------------------


def _next(request: Request, wanted: str) -> str:
    """Where to go after signing in: a page of this console only (no open redirect)."""
    root = str(request.scope.get("root_path", ""))
    if wanted.startswith(root + "/") and not wanted.startswith("//") and "\\" not in wanted:
        return wanted
    return root + "/"


async def sign_in_page(request: Request) -> Response:
    console: Console = request.app.state.console
    context = {"next": _next(request, request.query_params.get("next", "")), "failed": False}
    return console.render(request, "sign_in.html", None, context)


async def sign_in(request: Request) -> Response:
    console: Console = request.app.state.console
    sign_in = console.sign_in
    if sign_in is None:  # pragma: no cover - the route exists only with a sign-in
        return console.problem(request, None, "Not found", "no sign-in here", 404)
    form = await read_form(request)
    target = _next(request, form.get("next"))
    if not check_csrf(request, console.secret, "", form.as_dict()):
        return console.problem(
            request, None, "Form expired", "the sign-in form expired; reload it", 403
        )
    if not sign_in.matches(form.get("token")):
        # The token given is not shown again, nor said how it differs.
        context = {"next": target, "failed": True}
        return console.render(request, "sign_in.html", None, context, 401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        sign_in.session(),
        path=cookie_path(request),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


async def sign_out(console: Console, request: Request, user: str, form: Form | None) -> Response:
    response = console.redirect(request, "sign_in")
    response.delete_cookie(SESSION_COOKIE, path=cookie_path(request))
    return response


def routes(console: Console) -> list[Route]:
    """The actions, each signed-in only, POST only and CSRF-checked; the sign-in's routes
    when the console signs in by token."""
    found = [
        console.route(
            "/new", create_rollout, "create_rollout", post=True, limits=NEW_ROLLOUT_LIMITS
        ),
        console.route("/rollouts/{name}/do/{action}", command, "command", post=True),
        console.route("/rollouts/{name}/retry", retry, "retry", post=True),
        console.route("/rollouts/{name}/effects/{what}", outbox, "outbox", post=True),
    ]
    if console.sign_in is not None:
        found += [
            Route("/sign-in", sign_in_page, methods=["GET"], name="sign_in"),
            Route("/sign-in", sign_in, methods=["POST"], name="sign_in_post"),
            console.route("/sign-out", sign_out, "sign_out", post=True),
        ]
    return found
