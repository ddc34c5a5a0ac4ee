"""`acrsync receipts`: signed delivery receipts.

* ``receipts verify BUNDLE [--public-key PEM] [--against OLDER]`` checks a bundle offline: every
  DSSE signature (Ed25519), every site's chain (sequence 1..n, each ``previous`` the SHA-256 of the
  envelope before it) ending at the head the signed release checkpoint names, the checkpoint's
  signature and its list of every site in scope (a Merkle root), and that everything is about the
  bundle's release. With ``--against`` an older bundle of the same release must be consistent with
  it: no site vanished or went back, no chain was rewritten. Exit 0 when valid, 1 naming the first
  broken receipt or site and why, 3 when a file cannot be read.
* ``receipts bundle RELEASE [--file F]`` fetches ``GET /api/releases/{id}/evidence?format=bundle``.
* ``receipts public-key`` prints the signing key's PEM (``GET /api/signing-key``); pin it with
  ``verify --public-key`` so a bundle proves where it came from, not just that it is intact.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from shared.cli.app import ExitCode, app
from shared.cli.status import ApiKeyOption, ApiUrlOption, ReleaseArgument

receipts_app = typer.Typer(
    help="Signed delivery receipts: verify a bundle offline, fetch one, print the public key.",
    no_args_is_help=True,
)
app.add_typer(receipts_app, name="receipts")


@receipts_app.command("verify")
def verify(
    bundle: Annotated[
        Path, typer.Argument(metavar="BUNDLE", help="An evidence bundle (JSON), e.g. from `acrsync receipts bundle`.")
    ],
    public_key: Annotated[
        Path | None,
        typer.Option(
            "--public-key",
            help="The signing key's PEM to pin (from `acrsync receipts public-key`); without it the key "
            "inside the bundle is used, which proves the bundle intact but not who signed it.",
        ),
    ] = None,
    against: Annotated[
        Path | None,
        typer.Option(
            "--against",
            metavar="OLDER",
            help="An older bundle of the same release: BUNDLE must extend it (no site vanished or went "
            "back, no chain rewritten).",
        ),
    ] = None,
) -> None:
    """Check every signature, every site's receipt chain and the signed checkpoint of a bundle, offline."""
    from shared.domain.evidence_bundles import verify_bundle, verify_consistency
    from shared.domain.receipts import NotABundle, ReceiptError, load_public_key

    document = _read_json(bundle)
    older = _read_json(against) if against is not None else None
    key = None
    if public_key is not None:
        try:
            key = load_public_key(_read_bytes(public_key))
        except ValueError as exc:
            _fail(f"{public_key}: {exc}", ExitCode.USAGE)
    path = bundle
    try:
        result = verify_bundle(document, public_key=key)
        moved = None
        if against is not None:
            path = against
            # The older bundle must be signed by the key that signed this one.
            earlier = verify_bundle(older, public_key=key or load_public_key(document["public_key"]))
            path = bundle
            moved = verify_consistency(result, earlier)
    except NotABundle as exc:
        _fail(f"{path}: {exc}", ExitCode.USAGE)
    except ReceiptError as exc:
        where = f"{against}: " if path == against and against is not None else ""
        _fail(f"INVALID: {where}{exc}", ExitCode.FAILED)
    if result.checkpoint is not None:
        chain = f"{len(result.heads)} site(s) in the checkpoint as of {result.checkpoint} (root {result.head})"
    else:
        chain = f"chain head {result.head}" if result.head else "no receipts yet"
    typer.echo(
        f"OK: {result.receipts} signed receipt(s) for {result.subject}@{result.digest} "
        f"(release {result.release_id}), {chain}, key {result.keyid}"
    )
    if result.sites:
        typer.echo(f"sites: {', '.join(result.sites)}")
    if against is not None:
        typer.echo(f"consistent with {against}: {moved} site(s) moved on since its checkpoint")
    if key is None:
        typer.echo(
            "note: checked against the public key inside the bundle; pass --public-key to pin the signer", err=True
        )


@receipts_app.command("bundle")
def bundle(
    reference: ReleaseArgument,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Write the bundle here instead of stdout.")] = None,
    api_url: ApiUrlOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Fetch a release's signed delivery receipts as one bundle (JSON)."""
    from shared.cli.status import api_errors, open_client, parse_reference, release_path, resolve

    ref = parse_reference(reference)
    with api_errors(), open_client(api_url, api_key) as client:
        release_id = resolve(client, ref)
        document = client.get_json(release_path(release_id, "/evidence"), params={"format": "bundle"})
    text = json.dumps(document, indent=2) + "\n"
    if file is None:
        sys.stdout.write(text)
        return
    try:
        file.write_text(text)
    except OSError as exc:
        _fail(f"cannot write {file}: {exc.strerror}", ExitCode.USAGE)
    typer.echo(f"wrote {len(document.get('receipts', []))} receipt(s) to {file}", err=True)


@receipts_app.command("public-key")
def public_key_command(api_url: ApiUrlOption = None, api_key: ApiKeyOption = None) -> None:
    """Print the public key (PEM) that verifies the receipts; its key id goes to stderr."""
    from shared.cli.status import api_errors, open_client

    with api_errors(), open_client(api_url, api_key) as client:
        answer = client.get_json("/api/signing-key")
    typer.echo(str(answer["public_key"]).rstrip("\n"))
    typer.echo(f"keyid {answer['keyid']}", err=True)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror or exc}", ExitCode.USAGE)


def _read_json(path: Path) -> Any:
    data = _read_bytes(path)
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        _fail(f"{path} is not JSON: {exc}", ExitCode.USAGE)


def _fail(message: str, code: ExitCode) -> NoReturn:
    typer.echo(f"error: {message}" if code is ExitCode.USAGE else message, err=True)
    raise typer.Exit(code)
