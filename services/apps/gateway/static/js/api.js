// Calls to the gateway from its pages: the key each page uses, and the API's refusals in words.

let key = null;

/** The key sent with every call from now on (null: none). */
export function useKey(value) {
  key = value || null;
}

/** The public search-only key the gateway hands to its page; null where it hands out none (404: open search).
 * Any other failure (unreachable, a proxy's 502 while the gateway restarts) throws: the page asks again. */
export async function publicKey() {
  const response = await fetch("/v1/public-key");
  if (response.status === 404) return null;
  if (!response.ok) throw new ApiError(`the page's key could not be fetched (${response.status})`, response.status);
  return (await response.json()).key;
}

/** An API error body in words: {"detail": "..."} or pydantic's list of {loc, msg}. */
export function messageOf(body, status) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((problem) => {
        const where = (problem.loc || []).filter((part) => part !== "body").join(" ");
        return where ? `${where}: ${problem.msg}` : problem.msg;
      })
      .join("; ");
  }
  return `the server answered ${status}`;
}

export class ApiError extends Error {
  /** `kind`: the API's own name of what went wrong ("bad_image", "too_large", ...; "" where it gave none). */
  constructor(message, status, kind = "") {
    super(message);
    this.status = status;
    this.kind = kind;
  }
}

/** fetch with the key; the parsed JSON, or an ApiError whose message is the API's own. */
export async function call(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (key) headers.Authorization = `Bearer ${key}`;
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch {
    throw new ApiError("the server could not be reached; check the connection and try again", 0);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) throw new ApiError(messageOf(body, response.status), response.status, body?.error || "");
  return body;
}

export function postJSON(path, value) {
  return call(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(value) });
}
