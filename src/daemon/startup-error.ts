/** A start-up failure to print as one line, without a stack trace. */
export class StartupError extends Error {
  override readonly name = "StartupError";
}
