/** The tabs' BroadcastChannel, `notify:<user>:channel`; every message says which tab sent it. */
export class Channel {
  constructor(env, name, id, onMessage) {
    this.id = id;
    this._channel = env.channel(name);
    if (this._channel) this._channel.onmessage = (event) => onMessage((event && event.data) || {});
  }

  /** False without BroadcastChannel: this tab is on its own. */
  get open() {
    return this._channel !== null;
  }

  post(message) {
    if (this._channel) this._channel.postMessage({ ...message, from: this.id });
  }

  close() {
    if (this._channel) this._channel.close();
    this._channel = null;
  }
}
