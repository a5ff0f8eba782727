// The credentials a client sends, loaded once for all its requests: at expiry, or after a 401, one
// load (an exec plugin's run, a token file's read) serves every request, watch, lease renewal and
// Event that needs them, as client-go's exec authenticator serves them under its lock. A 401 lets
// go of the credentials only when they are still the ones the refused request sent: if another
// request has already replaced them, the refusal is no reason to load again, nor to drop a load
// under way.
import type { Credentials } from './types.ts';

interface Load {
  loading: Promise<Credentials>;
  /** What it gave, once it has. */
  loaded?: Credentials;
}

export class CredentialCache {
  private readonly load: () => Promise<Credentials>;
  private current: Load | undefined;

  constructor(load: () => Promise<Credentials>) {
    this.load = load;
  }

  /** The credentials to send: those held until they expire, else those of the one load under way. */
  async get(): Promise<Credentials> {
    const held = this.current;
    if (held) {
      const credentials = await held.loading;
      // The wall clock: an expiry is a date its issuer set (an ExecCredential's expirationTimestamp).
      if (credentials.expiresAt > Date.now()) return credentials;
      // The first request to see them expired loads again; the others wait for that load.
      if (this.current === held) this.current = undefined;
    }
    return (this.current ?? this.start()).loading;
  }

  /** `sent` was refused (401): the next request loads again, unless another has already. */
  refused(sent: Credentials): void {
    if (this.current?.loaded === sent) this.current = undefined;
  }

  private start(): Load {
    const load: Load = { loading: this.load() };
    this.current = load;
    void load.loading.then(
      (credentials) => {
        load.loaded = credentials;
      },
      // A failure (an exec plugin that timed out, say) is not kept: the next request tries again.
      () => {
        if (this.current === load) this.current = undefined;
      },
    );
    return load;
  }
}
