"""labkit's exceptions, in one tree.

    LabkitError
    ├── ApiError                 the API server answered with a Kubernetes Status
    │   ├── BadRequest           400
    │   ├── Unauthorized         401
    │   ├── NotFound             404
    │   ├── Conflict             409 (stale resourceVersion, apply conflicts)
    │   │   └── AlreadyExists    409 reason AlreadyExists
    │   ├── Gone                 410 (a watch resourceVersion too old)
    │   └── Invalid              422 with `details.causes`
    ├── ClusterNotRunning        no cluster answers at this LABKIT_HOME
    ├── ClusterError             a cluster could not be started, reached or stopped
    │   └── BackendUnavailable   a backend's prerequisites are missing here (Docker, kind, a kubeconfig)
    └── Unavailable              this backend cannot show or do that (the message says why)

The API server raises the same ApiError subclasses it serialises, so a
Status travels unchanged from the server's handler to a client's `except`.
"""

from __future__ import annotations

from typing import Any


class LabkitError(Exception):
    """Base of every error labkit raises on purpose."""


class ClusterNotRunning(LabkitError):
    """No cluster is running for this LABKIT_HOME."""


class ClusterError(LabkitError):
    """A cluster could not be started, reached or stopped."""


class BackendUnavailable(ClusterError):
    """A backend cannot run here: what it needs (Docker, kind, a kubeconfig) is missing."""


class Unavailable(LabkitError):
    """What was asked cannot be shown or done on this backend (no IPVS table in nftables mode, …)."""


class ApiError(LabkitError):
    """A Kubernetes `Status` failure: `code`, `reason`, `message`, `details`."""

    code = 500
    reason = "InternalError"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None,
                 code: int | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code
        if reason is not None:
            self.reason = reason

    def status(self) -> dict[str, Any]:
        """The `Status` object the API server sends for this error."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body

    @classmethod
    def from_status(cls, status: dict[str, Any], http_code: int) -> ApiError:
        """Rebuild the matching subclass from a Status a server sent."""
        code = int(status.get("code") or http_code)
        reason = status.get("reason") or ""
        message = status.get("message") or f"HTTP {code}"
        details = status.get("details")
        sub: type[ApiError] = _BY_REASON.get(reason) or _BY_CODE.get(code) or ApiError
        return sub(message, details=details, code=code, reason=reason or sub.reason)

    @property
    def causes(self) -> list[dict[str, str]]:
        return list((self.details or {}).get("causes") or [])


class BadRequest(ApiError):
    code = 400
    reason = "BadRequest"


class Unauthorized(ApiError):
    code = 401
    reason = "Unauthorized"


class Forbidden(ApiError):
    code = 403
    reason = "Forbidden"


class NotFound(ApiError):
    code = 404
    reason = "NotFound"


class MethodNotAllowed(ApiError):
    code = 405
    reason = "MethodNotAllowed"


class Conflict(ApiError):
    code = 409
    reason = "Conflict"


class AlreadyExists(Conflict):
    reason = "AlreadyExists"


class Gone(ApiError):
    code = 410
    reason = "Expired"


class UnsupportedMediaType(ApiError):
    code = 415
    reason = "UnsupportedMediaType"


class Invalid(ApiError):
    code = 422
    reason = "Invalid"


class ServiceUnavailable(ApiError):
    code = 503
    reason = "ServiceUnavailable"


_BY_REASON: dict[str, type[ApiError]] = {
    "AlreadyExists": AlreadyExists,
    "Conflict": Conflict,
    "NotFound": NotFound,
    "Invalid": Invalid,
    "Expired": Gone,
    "Gone": Gone,
    "Unauthorized": Unauthorized,
    "Forbidden": Forbidden,
    "BadRequest": BadRequest,
}
_BY_CODE: dict[int, type[ApiError]] = {
    400: BadRequest, 401: Unauthorized, 403: Forbidden, 404: NotFound, 405: MethodNotAllowed,
    409: Conflict, 410: Gone, 415: UnsupportedMediaType, 422: Invalid,
}


def _about(resource: str, name: str, group: str) -> tuple[str, dict[str, Any]]:
    """How the API server names an object in messages (`deployments.apps "x"`) and in `details`."""
    qualified = f"{resource}.{group}" if group else resource
    details: dict[str, Any] = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    return qualified, details


def not_found(resource: str, name: str, group: str = "") -> NotFound:
    """`services "nginx" not found`, as the API server words it."""
    qualified, details = _about(resource, name, group)
    return NotFound(f'{qualified} "{name}" not found', details=details)


def already_exists(resource: str, name: str, group: str = "") -> AlreadyExists:
    qualified, details = _about(resource, name, group)
    return AlreadyExists(f'{qualified} "{name}" already exists', details=details)


def conflict(resource: str, name: str, group: str = "", why: str = "") -> Conflict:
    """The optimistic-concurrency failure of an update with a stale resourceVersion."""
    qualified, details = _about(resource, name, group)
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return Conflict(f'Operation cannot be fulfilled on {qualified} "{name}": {why}', details=details)


def invalid(kind: str, name: str, causes: list[dict[str, str]], group: str = "") -> Invalid:
    """A 422 whose message reads as the API server's: `Service "x" is invalid: [a, b]`."""
    parts = [f"{c['field']}: {c['message']}" if c.get("field") else c["message"] for c in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    qualified, details = _about(kind, name, group)
    details["causes"] = causes
    return Invalid(f'{qualified} "{name}" is invalid: {summary}', details=details)
