/** The URL if it is http(s) or relative, else null: never a javascript: link. */
export function safeUrl(url, base = globalThis.location ? globalThis.location.href : "http://localhost/") {
  if (!url) return null;
  try {
    const parsed = new URL(url, base);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}
