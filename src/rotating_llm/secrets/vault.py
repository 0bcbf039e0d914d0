"""The ``vault`` secret store: HashiCorp Vault / OpenBao KV v2, token or AppRole auth.

``VAULT_SECRET_PATH=secret/llm`` means mount ``secret`` and path ``llm/<key_id>``; the
value is the field ``api_key``. ``hvac`` is imported only when a store is built.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from rotating_llm.errors import ConfigError, SecretStoreError
from rotating_llm.redaction import register_secret
from rotating_llm.secrets.base import SecretStore

if TYPE_CHECKING:
    from rotating_llm.config import Settings

__all__ = ["VaultSecretStore", "parse_verify", "split_secret_path"]

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_verify(value: str | bool | None) -> bool | str:
    """``VAULT_VERIFY``: ``true``/``false`` (and 1/0, yes/no) or the path of a CA bundle.

    Raises:
        ConfigError: the value is a path that does not exist.
    """
    if value is None or isinstance(value, bool):
        return True if value is None else value
    text = value.strip()
    if text.lower() in _TRUE or text == "":
        return True
    if text.lower() in _FALSE:
        return False
    if not os.path.exists(text):
        raise ConfigError(f"VAULT_VERIFY: CA bundle {text!r} does not exist")
    return text


def split_secret_path(secret_path: str) -> tuple[str, str]:
    """``secret/llm`` -> (``secret``, ``llm``); ``secret`` -> (``secret``, ``""``).

    Raises:
        ConfigError: the path is empty.
    """
    parts = [p for p in secret_path.strip().strip("/").split("/") if p]
    if not parts:
        raise ConfigError("VAULT_SECRET_PATH is empty: expected '<mount>/<path>', e.g. secret/llm")
    return parts[0], "/".join(parts[1:])


class VaultSecretStore(SecretStore):
    """Secrets from a Vault KV v2 engine, as in the original design's Option B.

    Args:
        url: the server address (``VAULT_ADDR``).
        mount_point: the KV v2 mount (first segment of ``VAULT_SECRET_PATH``).
        base_path: the path under the mount where ``<key_id>`` secrets live.
        token: a Vault token (``VAULT_TOKEN``); ignored when AppRole is given.
        role_id: AppRole role id (``VAULT_ROLE_ID``).
        secret_id: AppRole secret id (``VAULT_SECRET_ID``).
        namespace: Vault Enterprise / OpenBao namespace (``VAULT_NAMESPACE``).
        verify: TLS verification: a bool or a CA bundle path (``VAULT_VERIFY``).
        field: the field holding the key (``api_key``).
        cache_ttl: seconds a read value is reused.
        timeout: seconds for one HTTP request to the server.
    """

    name = "vault"

    def __init__(
        self,
        url: str,
        *,
        mount_point: str = "secret",
        base_path: str = "llm",
        token: str | None = None,
        role_id: str | None = None,
        secret_id: str | None = None,
        namespace: str | None = None,
        verify: bool | str = True,
        field: str = "api_key",
        cache_ttl: float = 300.0,
        timeout: float = 10.0,
    ) -> None:
        super().__init__(cache_ttl=cache_ttl)
        if not url:
            raise ConfigError("VAULT_ADDR is required for SECRET_STORE_TYPE=vault")
        if (role_id is None) != (secret_id is None):
            raise ConfigError("AppRole needs both VAULT_ROLE_ID and VAULT_SECRET_ID")
        if role_id is None and not token:
            raise ConfigError(
                "SECRET_STORE_TYPE=vault needs VAULT_TOKEN or VAULT_ROLE_ID + VAULT_SECRET_ID"
            )
        try:
            import hvac
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise ConfigError(
                "SECRET_STORE_TYPE=vault needs hvac: pip install 'rotating-llm[vault]'"
            ) from None
        self.url = url
        self.mount_point = mount_point
        self.base_path = base_path.strip("/")
        self.namespace = namespace
        self.field = field
        self.auth_method = "approle" if role_id is not None else "token"
        self._role_id = role_id
        self._secret_id = secret_id
        self._hvac = hvac
        self._login_lock = threading.Lock()
        self._logged_in = False
        self._client: Any = hvac.Client(
            url=url,
            token=None if role_id is not None else token,
            namespace=namespace or None,
            verify=verify,
            timeout=timeout,
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> VaultSecretStore:
        """A store configured from ``VAULT_*`` settings."""
        mount, base = split_secret_path(settings.vault_secret_path)
        return cls(
            settings.vault_addr or "",
            mount_point=mount,
            base_path=base,
            token=settings.vault_token.get_secret_value() if settings.vault_token else None,
            role_id=settings.vault_role_id or None,
            secret_id=(
                settings.vault_secret_id.get_secret_value() if settings.vault_secret_id else None
            ),
            namespace=settings.vault_namespace or None,
            verify=parse_verify(settings.vault_verify),
            cache_ttl=settings.secret_cache_ttl,
        )

    def __repr__(self) -> str:
        return (
            f"VaultSecretStore(url={self.url!r}, mount={self.mount_point!r}, "
            f"path={self.base_path!r}, auth={self.auth_method}, cached={len(self._cache)}, "
            f"cache_ttl={self.cache_ttl})"
        )

    def _path(self, key_id: str) -> str:
        return f"{self.base_path}/{key_id}" if self.base_path else key_id

    def location(self, key_id: str) -> str:
        return f"{self.mount_point}/{self._path(key_id)}#{self.field}"

    def _error(self, key_id: str, what: str) -> SecretStoreError:
        return SecretStoreError(
            f"Cannot retrieve secret for key {key_id!r} from the vault store "
            f"at {self.location(key_id)}: {what}",
            key_id=key_id,
            store=self.name,
        )

    def _login(self, key_id: str, *, force: bool = False) -> None:
        """Log in with AppRole (once, or again when ``force``); token auth needs nothing."""
        if self.auth_method != "approle":
            return
        with self._login_lock:
            if self._logged_in and not force:
                return
            exc_mod = self._hvac.exceptions
            try:
                self._client.auth.approle.login(role_id=self._role_id, secret_id=self._secret_id)
            except (exc_mod.InvalidRequest, exc_mod.Forbidden, exc_mod.Unauthorized):
                raise self._error(
                    key_id, "AppRole login refused (check VAULT_ROLE_ID / VAULT_SECRET_ID)"
                ) from None
            except exc_mod.VaultError as exc:
                raise self._error(key_id, f"AppRole login failed ({type(exc).__name__})") from None
            except Exception as exc:
                raise self._error(key_id, self._transport_reason(exc)) from None
            self._logged_in = True

    def _transport_reason(self, exc: BaseException) -> str:
        import requests

        if isinstance(exc, requests.exceptions.SSLError):
            return f"TLS verification failed for {self.url} (see VAULT_VERIFY)"
        if isinstance(exc, requests.exceptions.Timeout):
            return f"server {self.url} did not answer in time"
        if isinstance(exc, requests.exceptions.ConnectionError):
            return f"server {self.url} is unreachable"
        return f"request failed ({type(exc).__name__})"

    def _read(self, key_id: str) -> Any:
        return self._client.secrets.kv.v2.read_secret_version(
            path=self._path(key_id),
            mount_point=self.mount_point,
            raise_on_deleted_version=False,
        )

    def _fetch(self, key_id: str) -> str:
        exc_mod = self._hvac.exceptions
        self._login(key_id)
        try:
            try:
                response = self._read(key_id)
            except exc_mod.Forbidden:
                if self.auth_method != "approle":
                    raise
                self._login(key_id, force=True)  # the AppRole token may have expired
                response = self._read(key_id)
        except exc_mod.InvalidPath as exc:
            body = getattr(exc, "json", None)  # a destroyed version still has metadata
            if not (isinstance(body, dict) and isinstance(body.get("data"), dict)):
                raise self._error(key_id, "no such secret") from None
            response = body
        except exc_mod.Forbidden:
            raise self._error(
                key_id, f"permission denied for the {self.auth_method} credentials"
            ) from None
        except exc_mod.Unauthorized:
            raise self._error(key_id, f"{self.auth_method} credentials rejected") from None
        except (exc_mod.VaultDown, exc_mod.VaultNotInitialized):
            raise self._error(key_id, f"server {self.url} is sealed or not ready") from None
        except exc_mod.VaultError as exc:
            raise self._error(key_id, f"server error ({type(exc).__name__})") from None
        except SecretStoreError:
            raise
        except Exception as exc:
            raise self._error(key_id, self._transport_reason(exc)) from None
        value = self._extract(key_id, response)
        register_secret(value)
        return value

    def _extract(self, key_id: str, response: Any) -> str:
        data = response.get("data") if isinstance(response, dict) else None
        if not isinstance(data, dict):
            raise self._error(key_id, "unexpected response (is the mount a KV v2 engine?)")
        metadata = data.get("metadata") or {}
        fields = data.get("data")
        if fields is None:
            version = metadata.get("version")
            if metadata.get("destroyed"):
                raise self._error(key_id, f"the current version ({version}) was destroyed")
            if metadata.get("deletion_time"):
                raise self._error(key_id, f"the current version ({version}) was deleted")
            raise self._error(key_id, "the secret has no data")
        if not isinstance(fields, dict) or self.field not in fields:
            raise self._error(key_id, f"the secret has no field {self.field!r}")
        value = fields[self.field]
        if not isinstance(value, str):
            raise self._error(key_id, f"field {self.field!r} is not a string")
        return value

    def close(self) -> None:
        """Close the HTTP session of the client."""
        adapter = getattr(self._client, "adapter", None)
        session = getattr(adapter, "session", None)
        if session is not None:
            session.close()
