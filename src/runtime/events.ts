// Kubernetes Events (events.k8s.io/v1) about the objects a controller manages: what a user reads
// in `kubectl describe`. The same event about the same object is sent once per window, so a
// controller stuck in a retry loop does not flood the API server. Events go out one at a time, in
// order, as client-go's broadcaster sends them: in a burst they queue behind the reconciles' own
// writes instead of competing with them for the API server.
import { randomBytes } from 'node:crypto';
import type { KubeObject } from '../kube/object.ts';
import { EVENTS, resource, type Requester, type Resource } from '../kube/resource.ts';

export interface ObjectReference {
  apiVersion: string;
  kind: string;
  name: string;
  namespace: string;
  uid: string;
  resourceVersion?: string;
}

export type EventType = 'Normal' | 'Warning';

export interface EventRecorderOptions {
  client: Requester;
  /** events.k8s.io reportingController, e.g. `example.com/echo-operator`. */
  controller: string;
  /** This replica: the pod name in a cluster. */
  instance: string;
  /** A repeat of the same event about the same object within this window is dropped. */
  dedupWindowMs?: number;
  onError?: (error: unknown) => void;
}

const MAX_REMEMBERED = 4096;
/** Events waiting to be sent; past this, new ones are dropped (client-go queues 1000 too). */
export const MAX_QUEUED = 1000;

interface PendingEvent {
  regarding: ObjectReference;
  type: EventType;
  reason: string;
  action: string;
  note: string;
  time: Date;
}

export class EventRecorder {
  private readonly options: EventRecorderOptions;
  /** When each event was last sent, on the monotonic clock: a step of the wall clock moves no window. */
  private readonly recent = new Map<string, number>();
  private readonly queue: PendingEvent[] = [];
  /** The event being sent, if any. */
  private sending: Promise<void> | undefined;

  private readonly events: Resource<KubeObject & Record<string, unknown>>;

  constructor(options: EventRecorderOptions) {
    this.options = options;
    this.events = resource(options.client, EVENTS);
  }

  /** Queues the event to be sent in the background; a failure to record is reported, never thrown. */
  record(
    regarding: ObjectReference,
    type: EventType,
    reason: string,
    action: string,
    note: string,
  ): void {
    const key = `${regarding.uid}\0${type}\0${reason}\0${note}`;
    const now = performance.now();
    const last = this.recent.get(key);
    if (last !== undefined && now - last < (this.options.dedupWindowMs ?? 10 * 60_000)) return;
    this.recent.delete(key);
    this.recent.set(key, now);
    if (this.recent.size > MAX_REMEMBERED) {
      const oldest = this.recent.keys().next().value;
      if (oldest !== undefined) this.recent.delete(oldest);
    }
    if (this.queue.length >= MAX_QUEUED) {
      this.options.onError?.(
        new Error(`${String(MAX_QUEUED)} Events already waiting: dropped ${reason} (${note})`),
      );
      return;
    }
    this.queue.push({ regarding, type, reason, action, note, time: new Date() });
    this.sendNext();
  }

  /**
   * Sends every queued event at once and waits for them: call before exiting, when no reconcile
   * is left to compete with, so that shutdown does not wait for them one by one.
   */
  async flush(): Promise<void> {
    const rest = this.queue.splice(0);
    await Promise.all([
      this.sending,
      ...rest.map((event) => this.send(event).catch((err: unknown) => this.options.onError?.(err))),
    ]);
  }

  /** Starts sending the next queued event unless one is being sent; each one's end starts the next. */
  private sendNext(): void {
    if (this.sending) return;
    const event = this.queue.shift();
    if (!event) return;
    this.sending = this.send(event)
      .catch((err: unknown) => this.options.onError?.(err))
      .finally(() => {
        this.sending = undefined;
        this.sendNext();
      });
  }

  private async send({ regarding, type, reason, action, note, time }: PendingEvent) {
    await this.events.namespace(regarding.namespace).create({
      apiVersion: EVENTS.apiVersion,
      kind: 'Event',
      metadata: {
        // Names of up to 253 characters: keep room for the unique suffix.
        name: `${regarding.name.slice(0, 200).replace(/[^a-z0-9]+$/, '')}.${time.getTime().toString(16)}${randomBytes(2).toString('hex')}`,
        namespace: regarding.namespace,
      },
      eventTime: microTime(time),
      reportingController: this.options.controller,
      reportingInstance: this.options.instance,
      action,
      reason,
      note: note.slice(0, 1024),
      type,
      regarding,
    });
  }
}

/** metav1.MicroTime: RFC 3339 with microseconds. */
function microTime(date: Date): string {
  return date.toISOString().replace(/Z$/, '000Z');
}
