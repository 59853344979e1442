"""E-consent (docs/consent.md): versioned forms, signatures, withdrawal, status and the gate.

A form is a draft until published; publishing fixes its SHA-256 content hash and retires the
version published before it for the same study and language. A signature binds a signer to one
published version (its number and hash). Consent is given by a `participant`, `caregiver` or `lar`
signature; a `witness` record attests such a signature and is never consent on its own. Every
write leaves one audit event of category `consent`. Decisions are written up in docs/consent.md.

One module per concern; callers import from the module that owns what they use:

- `forms`: drafting, editing, deleting and publishing form versions, reading and listing them;
  the content hash (`form_content_hash`) and the version in force (`current_form`).
- `gate`: who must consent or consent again: `consent_state` (what the status shows),
  `consent_gate` (asked before an assessment session starts), `get_consent_status`.
- `signatures`: signature images: `parse_signature_image` checks a PNG data URI (SVG is
  refused), `stored_signature_image` reads a stored one back.
- `signing`: `sign_consent` (answers and signer checked) and `withdraw_consent`.
- `records`: listing and reading consent records, and the signed form as a PDF (`record_pdf`,
  `render_consent_pdf`).
"""
