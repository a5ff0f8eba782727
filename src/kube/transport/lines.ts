// Splits a stream of text into lines, scanning each character once: a watch delivers one JSON
// object per line, and a large object arrives in many chunks. Searching the whole buffer again
// for each chunk would cost time quadratic in the object's size.

/**
 * The longest line read, in characters (bytes, for the ASCII JSON the API server writes): client-go
 * refuses a watch event past 16 MiB (apimachinery's runtime/serializer/streaming, `maxBytes`) and
 * ends the watch, as the protobuf frames' limit does (MAX_FRAME_BYTES). Without it, a stream that
 * never sends a newline would be held until memory runs out.
 */
export const MAX_LINE_LENGTH = 16 * 1024 * 1024;

export class LineTooLongError extends Error {
  override readonly name = 'LineTooLongError';
}

export class LineSplitter {
  private readonly maxLength: number;
  /** The parts of the line not yet ended, in order; joined once its newline arrives. */
  private pending: string[] = [];
  private pendingLength = 0;

  constructor(maxLength = MAX_LINE_LENGTH) {
    this.maxLength = maxLength;
  }

  /** The lines that `text` completes, without their newlines. Throws past `maxLength`. */
  push(text: string): string[] {
    const lines: string[] = [];
    let start = 0;
    for (let newline = text.indexOf('\n'); newline >= 0; newline = text.indexOf('\n', start)) {
      this.hold(text.slice(start, newline));
      lines.push(this.pending.join(''));
      this.pending = [];
      this.pendingLength = 0;
      start = newline + 1;
    }
    if (start < text.length) this.hold(text.slice(start));
    return lines;
  }

  private hold(part: string): void {
    this.pendingLength += part.length;
    if (this.pendingLength > this.maxLength)
      throw new LineTooLongError(
        `a watch event longer than ${String(this.maxLength)} characters: not read`,
      );
    this.pending.push(part);
  }
}
