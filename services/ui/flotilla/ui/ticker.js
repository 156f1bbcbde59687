// <flotilla-ticker>: asks the server for a run's next events, one request at a time.
//
// Mesop handles a page's events one after another, so the page never holds an endless stream
// open (a click would wait behind it). Instead this element fires `tickEvent` once; the server
// waits briefly for new events, renders, and bumps the `tick` property, which arms the next tick.
// No timer piles up: a tick is only fired after the previous one came back. Plain custom element,
// no library, so nothing is fetched from outside.
class FlotillaTicker extends HTMLElement {
  constructor() {
    super();
    this._active = false;
    this._tick = null;
    this._delayMs = 100;
    this._tickEvent = "";
    this._timer = null;
    this._waiting = false;
    this._watchdog = null;
  }

  set active(value) {
    this._active = Boolean(value);
    this._arm();
  }
  get active() {
    return this._active;
  }

  set tick(value) {
    if (value === this._tick) return;
    this._tick = value;
    this._waiting = false; // the previous tick came back
    this._arm();
  }
  get tick() {
    return this._tick;
  }

  set delayMs(value) {
    const delay = Math.max(0, Number(value) || 0);
    const sooner = delay < this._delayMs;
    this._delayMs = delay;
    if (sooner && this._timer !== null) {
      // The page went from waiting for the person to watching the agents (an answer was sent):
      // the next tick comes after the shorter delay, not at the end of the long one.
      clearTimeout(this._timer);
      this._timer = null;
      this._arm();
    }
  }
  get delayMs() {
    return this._delayMs;
  }

  set tickEvent(value) {
    this._tickEvent = value;
    this._arm();
  }
  get tickEvent() {
    return this._tickEvent;
  }

  connectedCallback() {
    this._arm();
  }

  disconnectedCallback() {
    clearTimeout(this._timer);
    clearTimeout(this._watchdog);
    this._timer = null;
  }

  _arm() {
    if (!this._active || !this._tickEvent || this._waiting || this._timer !== null || !this.isConnected) return;
    this._timer = setTimeout(() => this._fire(), this._delayMs);
  }

  _fire() {
    this._timer = null;
    if (!this._active || !this._tickEvent || !this.isConnected) return;
    this._waiting = true;
    const sent = this._tick;
    this.dispatchEvent(new MesopEvent(this._tickEvent, { tick: sent }));
    // A tick that never comes back (server error, lost response) must not stop the page for good.
    clearTimeout(this._watchdog);
    this._watchdog = setTimeout(() => {
      if (this._waiting && this._tick === sent) {
        this._waiting = false;
        this._arm();
      }
    }, 20000);
  }
}

if (!customElements.get("flotilla-ticker")) {
  customElements.define("flotilla-ticker", FlotillaTicker);
}
