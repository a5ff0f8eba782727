// Splits a stream of text into lines, scanning each character once: a watch delivers one JSON
// object per line, and a large object arrives in many chunks. Searching the whole buffer again
// for each chunk would cost time quadratic in the object's size.

export class LineSplitter {
  /** The parts of the line not yet ended, in order; joined once its newline arrives. */
  private pending: string[] = [];

  /** The lines that `text` completes, without their newlines. */
  push(text: string): string[] {
    const lines: string[] = [];
    let start = 0;
    for (let newline = text.indexOf('\n'); newline >= 0; newline = text.indexOf('\n', start)) {
      this.pending.push(text.slice(start, newline));
      lines.push(this.pending.join(''));
      this.pending = [];
      start = newline + 1;
    }
    if (start < text.length) this.pending.push(text.slice(start));
    return lines;
  }
}
