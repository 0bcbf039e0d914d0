"""The ``aws`` secret store: AWS Secrets Manager, secret ``AWS_SECRET_PREFIX + key_id``.

The ``SecretString`` is either JSON with an ``api_key`` field or the plain key. Credentials,
profiles and endpoints come from boto3's standard chain (``AWS_ACCESS_KEY_ID``,
``AWS_PROFILE``, instance roles, ``AWS_ENDPOINT_URL_SECRETS_MANAGER``, ``AWS_ENDPOINT_URL``).
``boto3`` is imported only when a store is built.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from rotating_llm.errors import ConfigError, SecretStoreError
from rotating_llm.redaction import register_secret
from rotating_llm.secrets.base import SecretStore

if TYPE_CHECKING:
    from rotating_llm.config import Settings

__all__ = ["AWSSecretStore"]

_NOT_FOUND = {"ResourceNotFoundException"}
_DENIED = {"AccessDeniedException", "AccessDenied", "KMSAccessDeniedException"}
_BAD_CREDENTIALS = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredTokenException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
}
_UNUSABLE = {"InvalidRequestException": "the secret is scheduled for deletion or disabled"}


class _WithheldBody(logging.Filter):
    """Replace botocore's DEBUG dump of a response body: for GetSecretValue it is the secret.

    botocore logs the body before the store has the value to register for redaction,
    so masking cannot catch a secret no detector recognises; the body is withheld.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Response body"):
            record.msg = "Response body: [withheld by rotating-llm: may hold a secret]"
            record.args = None
        return True


_BODY_FILTER = _WithheldBody()


def _withhold_botocore_bodies() -> None:
    """Attach the body filter to ``botocore.parsers`` once (where the dump is logged)."""
    parser_logger = logging.getLogger("botocore.parsers")
    if _BODY_FILTER not in parser_logger.filters:
        parser_logger.addFilter(_BODY_FILTER)


class AWSSecretStore(SecretStore):
    """Secrets from AWS Secrets Manager, as in the original design's Option C.

    Args:
        region: the AWS region (``AWS_REGION``).
        prefix: prepended to the key id to name the secret (``AWS_SECRET_PREFIX``).
        field: the JSON field holding the key (``api_key``).
        endpoint_url: an explicit endpoint; by default boto3 reads
            ``AWS_ENDPOINT_URL_SECRETS_MANAGER`` / ``AWS_ENDPOINT_URL`` itself.
        cache_ttl: seconds a read value is reused.
        client: a ready ``secretsmanager`` client (tests, custom sessions).
    """

    name = "aws"

    def __init__(
        self,
        region: str = "us-east-1",
        *,
        prefix: str = "llm/",
        field: str = "api_key",
        endpoint_url: str | None = None,
        cache_ttl: float = 300.0,
        client: Any = None,
    ) -> None:
        super().__init__(cache_ttl=cache_ttl)
        self.region = region
        self.prefix = prefix
        self.field = field
        try:
            import botocore.exceptions
        except ImportError:  # pragma: no cover - depends on the installed extras
            raise ConfigError(
                "SECRET_STORE_TYPE=aws needs boto3: pip install 'rotating-llm[aws]'"
            ) from None
        self._botocore_exceptions = botocore.exceptions
        _withhold_botocore_bodies()
        if client is None:
            import boto3
            from botocore.config import Config

            config = Config(
                connect_timeout=5,
                read_timeout=10,
                retries={"max_attempts": 2, "mode": "standard"},
            )
            try:
                client = boto3.session.Session(region_name=region or None).client(
                    "secretsmanager", endpoint_url=endpoint_url, config=config
                )
            except botocore.exceptions.BotoCoreError as exc:
                raise ConfigError(
                    f"cannot build the AWS Secrets Manager client ({type(exc).__name__})"
                ) from None
        self._client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> AWSSecretStore:
        """A store configured from ``AWS_REGION`` and ``AWS_SECRET_PREFIX``."""
        return cls(
            settings.aws_region,
            prefix=settings.aws_secret_prefix,
            cache_ttl=settings.secret_cache_ttl,
        )

    def __repr__(self) -> str:
        return (
            f"AWSSecretStore(region={self.region!r}, prefix={self.prefix!r}, "
            f"cached={len(self._cache)}, cache_ttl={self.cache_ttl})"
        )

    @property
    def endpoint_url(self) -> str:
        """The endpoint the client talks to (after boto3 resolved the environment)."""
        return str(self._client.meta.endpoint_url)

    def secret_name(self, key_id: str) -> str:
        """The Secrets Manager name of ``key_id``'s secret."""
        return f"{self.prefix}{key_id}"

    def location(self, key_id: str) -> str:
        return f"secretsmanager:{self.region}:{self.secret_name(key_id)}"

    def _error(self, key_id: str, what: str) -> SecretStoreError:
        return SecretStoreError(
            f"Cannot retrieve secret for key {key_id!r} from the aws store "
            f"({self.location(key_id)}): {what}",
            key_id=key_id,
            store=self.name,
        )

    def _fetch(self, key_id: str) -> str:
        exc_mod = self._botocore_exceptions
        try:
            response = self._client.get_secret_value(SecretId=self.secret_name(key_id))
        except exc_mod.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
            if code in _NOT_FOUND:
                what = "no such secret"
            elif code in _DENIED:
                what = f"access denied ({code})"
            elif code in _BAD_CREDENTIALS:
                what = f"AWS credentials rejected ({code})"
            else:
                what = _UNUSABLE.get(code, f"request failed ({code})")
            raise self._error(key_id, what) from None
        except exc_mod.NoCredentialsError:
            raise self._error(key_id, "no AWS credentials found in the credential chain") from None
        except (exc_mod.EndpointConnectionError, exc_mod.ConnectTimeoutError):
            raise self._error(key_id, f"endpoint {self.endpoint_url} is unreachable") from None
        except exc_mod.ReadTimeoutError:
            raise self._error(key_id, f"endpoint {self.endpoint_url} did not answer") from None
        except exc_mod.BotoCoreError as exc:
            raise self._error(key_id, f"request failed ({type(exc).__name__})") from None
        value = self._parse(key_id, response.get("SecretString"))
        register_secret(value)
        return value

    def _parse(self, key_id: str, secret_string: Any) -> str:
        if secret_string is None:
            raise self._error(key_id, "the secret has no SecretString (binary secrets are unused)")
        text = str(secret_string).strip()
        if not text.startswith(("{", '"')):
            return text
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            if text.startswith("{"):
                raise self._error(key_id, "SecretString looks like JSON but is not valid") from None
            return text
        if isinstance(data, str):
            return data
        if not isinstance(data, dict):
            raise self._error(key_id, "SecretString JSON is not an object")
        value = data.get(self.field)
        if not isinstance(value, str):
            raise self._error(key_id, f"SecretString JSON has no string field {self.field!r}")
        return value

    def close(self) -> None:
        """Close the client's connection pool."""
        closer = getattr(self._client, "close", None)
        if callable(closer):
            closer()
