"""The two PAM questions the portal asks, each on its own: password, then account.

``python-pam`` answers "may this person log in" in one call, and whether that call
includes account management (``pam_acct_mgmt``: expiry, password aging, the site's
access rules) depends on its version: 2.1 runs it after the password check, 2.0 does
not. Either way its answer cannot tell a wrong password from a right password on an
expired account. The portal needs the two apart (a person who knows the password is
told that the account is refused; anyone else only that the login failed), and it
needs account management *without* a password, to end the sessions of an account
that was expired after its holder logged in. So this module calls libpam directly
through ctypes: ``authenticate`` runs only the ``auth`` stack, ``account`` only the
``account`` stack.

Both work for the production service account as well as for root: pam_unix reads
``/etc/shadow`` itself when it can (root, or the service account in group
``shadow``, as ``hpcportal runas install`` sets up), else asks its setgid helper
``unix_chkpwd``. A fresh handle per call, so concurrent calls are safe; ctypes
releases the GIL while libpam runs (and sleeps out its failure delay).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from typing import Any

PAM_SUCCESS = 0
PAM_CONV_ERR = 19
PAM_PROMPT_ECHO_OFF = 1
PAM_PROMPT_ECHO_ON = 2
PAM_ERROR_MSG = 3
PAM_TEXT_INFO = 4
#: Refuse an empty password even where the stack says ``nullok``.
PAM_DISALLOW_NULL_AUTHTOK = 0x0001


class _Message(ctypes.Structure):
    _fields_ = [("msg_style", ctypes.c_int), ("msg", ctypes.c_char_p)]


class _Response(ctypes.Structure):
    # ``resp`` is a c_void_p, not c_char_p: libpam frees it, so it must be memory
    # from the C allocator, which ctypes would not give for a c_char_p.
    _fields_ = [("resp", ctypes.c_void_p), ("resp_retcode", ctypes.c_int)]


_CONV = ctypes.CFUNCTYPE(
    ctypes.c_int,
    ctypes.c_int,
    ctypes.POINTER(ctypes.POINTER(_Message)),
    ctypes.POINTER(ctypes.POINTER(_Response)),
    ctypes.c_void_p,
)


class _Conv(ctypes.Structure):
    _fields_ = [("conv", _CONV), ("appdata_ptr", ctypes.c_void_p)]


class _Lib:
    """libpam and the two libc allocators, loaded once."""

    _lock = threading.Lock()
    _loaded: _Lib | None = None

    def __init__(self) -> None:
        name = ctypes.util.find_library("pam")
        if name is None:
            raise OSError("libpam is not installed")
        pam = ctypes.CDLL(name)
        libc = ctypes.CDLL(None)
        self.calloc = libc.calloc
        self.calloc.restype = ctypes.c_void_p
        self.calloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
        self.start = pam.pam_start
        self.start.restype = ctypes.c_int
        self.start.argtypes = [
            ctypes.c_char_p,
            ctypes.c_char_p,
            ctypes.POINTER(_Conv),
            ctypes.POINTER(ctypes.c_void_p),
        ]
        self.authenticate = pam.pam_authenticate
        self.acct_mgmt = pam.pam_acct_mgmt
        self.end = pam.pam_end
        for function in (self.authenticate, self.acct_mgmt, self.end):
            function.restype = ctypes.c_int
            function.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self.strerror = pam.pam_strerror
        self.strerror.restype = ctypes.c_char_p
        self.strerror.argtypes = [ctypes.c_void_p, ctypes.c_int]

    @classmethod
    def get(cls) -> _Lib:
        with cls._lock:
            if cls._loaded is None:
                cls._loaded = _Lib()
            return cls._loaded


def _conversation(lib: _Lib, password: bytes | None) -> Any:
    """Answer a hidden prompt with ``password``; with none (account management), any
    prompt is a conversation error. Information and error texts get empty answers."""

    def converse(count: int, messages: Any, responses: Any, _data: Any) -> int:
        styles = [messages[i].contents.msg_style for i in range(count)]
        if password is None and any(s in (PAM_PROMPT_ECHO_OFF, PAM_PROMPT_ECHO_ON) for s in styles):
            return PAM_CONV_ERR
        array = lib.calloc(count, ctypes.sizeof(_Response))
        if not array:
            return PAM_CONV_ERR
        answers = ctypes.cast(array, ctypes.POINTER(_Response))
        for i, style in enumerate(styles):
            if style == PAM_PROMPT_ECHO_OFF and password is not None:
                copy = lib.calloc(len(password) + 1, 1)
                if not copy:
                    return PAM_CONV_ERR  # libpam frees what was answered so far
                ctypes.memmove(copy, password, len(password))
                answers[i].resp = copy
        responses[0] = answers
        return PAM_SUCCESS

    return _CONV(converse)


def _run(
    service: str,
    username: str,
    password: bytes | None,
    step: str,
) -> tuple[int, str]:
    lib = _Lib.get()
    callback = _conversation(lib, password)  # kept alive until pam_end
    conv = _Conv(callback, None)
    handle = ctypes.c_void_p()
    code = lib.start(service.encode(), username.encode(), ctypes.byref(conv), ctypes.byref(handle))
    if code != PAM_SUCCESS:
        return code, f"pam_start failed ({code})"
    try:
        if step == "auth":
            code = lib.authenticate(handle, PAM_DISALLOW_NULL_AUTHTOK)
        else:
            code = lib.acct_mgmt(handle, PAM_DISALLOW_NULL_AUTHTOK)
        reason = (lib.strerror(handle, code) or b"").decode(errors="replace")
    finally:
        lib.end(handle, code)
    return code, reason


def authenticate(service: str, username: str, password: str) -> bool:
    """Only the ``auth`` stack: is this the account's password? Blocks (PAM's failure
    delay, about 2 s with pam_unix)."""
    code, _ = _run(service, username, password.encode(), "auth")
    return code == PAM_SUCCESS


def account(service: str, username: str) -> tuple[bool, str]:
    """Only the ``account`` stack: may this account be used now (not expired, no
    password change forced, allowed by the site's access rules)? Needs no password.
    Returns the verdict and PAM's reason (for the log, never for the person)."""
    code, reason = _run(service, username, None, "account")
    return code == PAM_SUCCESS, reason
