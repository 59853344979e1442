"""Staff accounts the way institutions run them (docs/accounts.md): invitations by email,
password reset, personal access tokens, single sign-on with OpenID Connect, and service
accounts. Sign-in itself, login sessions and 2FA are `app.services.auth`."""
