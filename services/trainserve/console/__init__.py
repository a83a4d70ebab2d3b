"""The web console: jobs, curves, comparisons and cancelling in a browser.

A transport like the CLI: every page and every JSON answer comes from the job API through
the SDK (`trainserve.client.Client`), called with the signed-in user's own bearer token, so
a user sees exactly what the CLI would show them. It never reads Redis or imports a server
package (an import-linter contract), and it ships every asset it serves (no CDN, no fonts).

- `links`: one-time sign-in links of the local stack (`trainserve up`, `trainserve console`);
- `sessions`: the server-side sessions (random id in a cookie -> token), their CSRF tokens;
- `security`: the headers every answer carries (CSP, frame and referrer policies), the
  checks of a state-changing request;
- `views`: jobs, curves, events and comparisons as the JSON the pages read;
- `live`: a job's epochs and log lines as Server-Sent Events;
- `app`: the Starlette application (`create_app`); `__main__`: `python -m trainserve.console`.

Only `links` is imported by the CLI; it loads neither Starlette nor the SDK.
"""
