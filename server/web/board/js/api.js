// Queries and mutations over HTTP (POST /graphql). Every failure becomes an ApiError
// carrying the API's extensions.code, so panels can show it (never swallow it).

export class ApiError extends Error {
  constructor(message, code, extensions = {}) {
    super(message);
    this.code = code;
    this.extensions = extensions;
  }
}

/** The text a panel shows for an error: "CODE: message". */
export function describe(error) {
  if (error && error.code) return `${error.code}: ${error.message}`;
  return String((error && error.message) || error);
}

/** Run one operation; resolves to `data`, rejects with an ApiError. */
export async function graphql(query, variables = {}, authorization = null) {
  const headers = { "content-type": "application/json", accept: "application/json" };
  if (authorization) headers.authorization = authorization;
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers,
      body: JSON.stringify({ query, variables }),
      credentials: "omit",
      cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(`the server cannot be reached (${error.message})`, "NETWORK_ERROR");
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`the server answered HTTP ${response.status} without JSON`, "HTTP_ERROR");
  }
  if (body.errors && body.errors.length) {
    const first = body.errors[0];
    const extensions = first.extensions || {};
    const message = body.errors.map((e) => e.message).join("; ");
    throw new ApiError(message, extensions.code || "ERROR", extensions);
  }
  if (!response.ok || !body.data) {
    throw new ApiError(`the server answered HTTP ${response.status}`, "HTTP_ERROR");
  }
  return body.data;
}
