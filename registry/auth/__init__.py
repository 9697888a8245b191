"""Identity for the registry server: API tokens, OIDC JWTs and the users who hold them."""

from registry.auth.entities import NewToken, UserInfo

__all__ = ["NewToken", "UserInfo"]
