from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from app.models.user import UserRole, UserStatus


class LoginRequest(BaseModel):
    # Not EmailStr: a sign-in only looks the address up, and deployments use local domains.
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class UserRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str
    role: UserRole
    status: UserStatus


class UserDetailRead(UserRead):
    must_change_password: bool
    terms_accepted_at: datetime | None
    totp_enabled: bool
    last_login_at: datetime | None
    created_at: datetime


class TokensRead(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 scheme name
    expires_in: int


class LoginResponse(BaseModel):
    user: UserRead
    tokens: TokensRead
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 scheme name
    must_change_password: bool


class MfaRequiredResponse(BaseModel):
    mfa_required: Literal[True] = True
    mfa_token: str


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


class MfaVerifyRequest(BaseModel):
    mfa_token: str = Field(min_length=1, max_length=4096)
    code: str = Field(min_length=6, max_length=10)


class ChangePasswordRequest(BaseModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: str = Field(min_length=1, max_length=1024)


class TotpSetupResponse(BaseModel):
    secret: str
    otpauth_uri: str


class TotpCodeRequest(BaseModel):
    code: str = Field(min_length=6, max_length=10)


class PasswordConfirmRequest(BaseModel):
    password: str = Field(min_length=1, max_length=1024)


class RegisterRequest(BaseModel):
    email: EmailStr
    name: str = Field(min_length=1, max_length=200)
    role: UserRole
    password: str | None = Field(
        default=None,
        max_length=1024,
        description="A temporary password; omitted, the server generates one and returns it once.",
    )
    sso_only: bool = Field(
        default=False,
        description="An account without a password that signs in through single sign-on only "
        "(no `password` then)",
    )

    @model_validator(mode="after")
    def _no_password_for_sso_only(self) -> RegisterRequest:
        if self.sso_only and self.password is not None:
            raise ValueError("an account that signs in through single sign-on has no password")
        return self


class RegisterResponse(BaseModel):
    user: UserDetailRead
    temporary_password: str | None = Field(
        description="Set only when the server generated it; shown once."
    )


class UserUpdateRequest(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    role: UserRole | None = None
    status: UserStatus | None = None
    reason: str | None = Field(default=None, max_length=1000)


class UserSessionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    user_id: uuid.UUID
    device: str | None
    ip: str | None
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_reason: str | None
    current: bool = False


class RevokedCount(BaseModel):
    revoked: int
