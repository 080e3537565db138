'use strict';
// topgun etcd browse: talks only to its own server, relative to the
// tokened page URL. Data is always inserted as text, never as HTML.
(function () {
  const VERDICTS = {
    healthy: 'Healthy', degraded: 'Degraded', no_leader: 'NoLeader',
    quorum_lost: 'QuorumLost', disagreement: 'Disagreement', alarmed: 'Alarmed',
  };
  let writable = false;
  let selected = null;

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v;
      else if (k.startsWith('data-')) e.setAttribute(k, v);
      else e[k] = v;
    }
    for (const c of children) {
      if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  async function api(path, body) {
    const init = { cache: 'no-store', credentials: 'same-origin' };
    if (body !== undefined) {
      init.method = 'POST';
      init.headers = { 'Content-Type': 'application/json' };
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    const text = await r.text();
    if (!r.ok) {
      let msg = text;
      try { msg = JSON.parse(text).error || text; } catch (_) { /* plain text */ }
      throw new Error(msg.trim());
    }
    return JSON.parse(text);
  }

  function size(n) {
    const units = ['B', 'kB', 'MB', 'GB'];
    let v = n, u = 0;
    while (v >= 1000 && u < units.length - 1) { v /= 1000; u++; }
    return u === 0 ? n + ' B' : (v < 10 ? v.toFixed(1) : v.toFixed(0)) + ' ' + units[u];
  }

  // ---- members and verdict, polled -----------------------------------
  async function refreshStatus() {
    try {
      const s = await api('api/status');
      const v = s.health.verdict;
      const badge = document.getElementById('verdict');
      badge.textContent = VERDICTS[v] || v;
      badge.className = 'badge ' + v;
      badge.dataset.verdict = v;
      document.getElementById('reason').textContent = s.health.reason;
      const body = document.querySelector('#members tbody');
      body.replaceChildren(...s.members.map((m) => {
        const leader = m.reachable && m.member_id && m.member_id === m.leader_id;
        return el('tr', { class: m.reachable ? '' : 'down', 'data-endpoint': m.endpoint },
          el('td', {}, m.endpoint),
          el('td', {}, m.member_id || '-'),
          el('td', {}, leader ? '★ leader' : ''),
          el('td', {}, m.reachable ? m.raft_term : '-'),
          el('td', {}, m.reachable ? m.raft_index : '-'),
          el('td', {}, m.reachable ? size(m.db_size) : '-'),
          el('td', {}, m.latency_ms == null ? '-' : m.latency_ms.toFixed(1) + ' ms'),
          el('td', {}, m.reachable ? 'up' : 'down: ' + (m.error || '').split(' [')[0]));
      }));
    } catch (e) {
      const badge = document.getElementById('verdict');
      badge.textContent = 'Error';
      badge.className = 'badge error';
      badge.dataset.verdict = 'error';
      document.getElementById('reason').textContent = e.message;
    }
    setTimeout(refreshStatus, 1000);
  }

  // ---- the key tree, one level per click -------------------------------
  function nodeItem(n) {
    const row = el('div', { class: 'node', 'data-path': n.path, 'data-leaf': n.leaf ? '1' : '0' },
      el('span', { class: 'twisty' }, n.leaf ? '' : '▸'),
      el('span', { class: 'name' }, n.name),
      el('span', { class: 'count', 'data-keys': String(n.keys) }, n.leaf ? '' : n.keys + (n.keys === 1 ? ' key' : ' keys')),
      el('span', { class: 'size', 'data-bytes': String(n.bytes) }, size(n.bytes)));
    const li = el('li', {}, row);
    row.addEventListener('click', () => {
      if (n.leaf) showKey(n.path, row);
      else toggle(li, n.path);
    });
    return li;
  }

  // Levels read ahead with the first view (/ and /registry/), by prefix.
  const prefetched = new Map();

  // One page of a level; a "more" row fetches the next page on click.
  async function loadLevel(ul, prefix, after) {
    const loading = el('li', { class: 'more' }, 'loading…');
    if (after) ul.append(loading); else ul.replaceChildren(loading);
    try {
      const ready = !after && prefetched.get(prefix);
      prefetched.delete(prefix);
      const level = ready || await api('api/tree?prefix=' + encodeURIComponent(prefix) +
        (after ? '&after=' + encodeURIComponent(after) : ''));
      loading.replaceWith(...level.children.map(nodeItem));
      if (level.truncated) {
        const last = level.children[level.children.length - 1].path;
        const shown = ul.querySelectorAll(':scope > li > .node').length;
        const more = el('li', { class: 'more link', 'data-more': prefix },
          'first ' + shown + ' shown; more…');
        more.addEventListener('click', () => { more.remove(); loadLevel(ul, prefix, last); });
        ul.append(more);
      }
      return level;
    } catch (e) {
      loading.replaceWith(el('li', { class: 'more error' }, e.message));
      return null;
    }
  }

  async function toggle(li, path) {
    let ul = li.querySelector(':scope > ul');
    const twisty = li.querySelector(':scope > .node > .twisty');
    if (ul) {
      ul.hidden = !ul.hidden;
      twisty.textContent = ul.hidden ? '▸' : '▾';
      return null;
    }
    ul = el('ul', { class: 'tree' });
    li.append(ul);
    twisty.textContent = '▾';
    const level = await loadLevel(ul, path);
    await autoExpand(ul, level);
    return level;
  }

  // A level with a single prefix opens it at once, and so does k3s's
  // /registry/ (/ → /registry/).
  async function autoExpand(ul, level) {
    if (!level) return;
    const dirs = level.children.filter((c) => !c.leaf);
    const open = level.children.length === 1 && dirs.length === 1
      ? dirs[0] : dirs.find((c) => c.path === '/registry/');
    if (open) {
      const li = ul.children[level.children.indexOf(open)];
      await toggle(li, open.path);
    }
  }

  // ---- one key: value, decoded, hex, history ----------------------------
  function describe(rev) {
    const parts = [];
    const d = rev.decoded;
    if (d.object) {
      const o = d.object;
      parts.push(el('div', { class: 'object', id: 'object', 'data-kind': o.kind, 'data-name': o.name, 'data-namespace': o.namespace },
        el('span', {}, el('b', {}, 'Kind '), o.kind),
        el('span', {}, el('b', {}, 'Name '), o.name),
        el('span', {}, el('b', {}, 'Namespace '), o.namespace || '—'),
        el('span', {}, el('b', {}, 'API '), o.api_version || '—')));
    }
    const label = { text: 'UTF-8 text', json: 'JSON', kubernetes: 'Kubernetes protobuf (k8s\\0 envelope)', binary: 'binary' }[d.format];
    parts.push(el('div', { class: 'meta', id: 'format', 'data-format': d.format },
      label + ' · ' + size(rev.size) + ' · revision ' + rev.mod_revision + ' (created ' + rev.create_revision + ', version ' + rev.version + ')'));
    if (d.format === 'text') parts.push(el('pre', { id: 'value-text' }, d.text));
    if (d.format === 'json') parts.push(el('pre', { id: 'value-text' }, d.pretty));
    parts.push(el('h3', {}, 'Raw bytes (hex)' + (rev.hex_truncated ? ', first 16 KiB' : '')));
    parts.push(el('pre', { id: 'value-hex' }, rev.hex));
    return parts;
  }

  async function showKey(key, row) {
    if (selected) selected.classList.remove('selected');
    selected = row || null;
    if (selected) selected.classList.add('selected');
    const pane = document.getElementById('value');
    pane.replaceChildren(el('p', { class: 'muted' }, 'loading…'));
    let view;
    try {
      view = await api('api/value?key=' + encodeURIComponent(key));
    } catch (e) {
      pane.replaceChildren(el('p', { class: 'error' }, e.message));
      return;
    }
    const head = el('h2', { id: 'value-key' }, key);
    if (!view.current) {
      pane.replaceChildren(head, el('p', { class: 'muted' }, 'This key does not exist (any more).'));
      return;
    }
    const body = el('div', {}, ...describe(view.current));
    const items = view.history.map((rev) => {
      const li = el('li', {}, 'revision ' + rev.mod_revision + ' · version ' + rev.version + ' · ' + size(rev.size));
      li.addEventListener('click', () => body.replaceChildren(...describe(rev)));
      return li;
    });
    const current = el('li', {}, 'revision ' + view.current.mod_revision + ' · version ' + view.current.version + ' (current)');
    current.addEventListener('click', () => body.replaceChildren(...describe(view.current)));
    const end = { created: 'back to its creation', compacted: 'older revisions are compacted', limit: 'older revisions not shown' }[view.history_end];
    const parts = [head, body, el('h3', {}, 'Revisions (' + end + ')'), el('ul', { class: 'history', id: 'history' }, current, ...items)];
    if (writable) {
      const del = el('button', { type: 'button' }, 'Delete key');
      del.addEventListener('click', async () => {
        if (!window.confirm('Delete ' + key + ' from etcd?')) return;
        try {
          await api('api/delete', { key });
          showKey(key, null);
        } catch (e) { window.alert(e.message); }
      });
      const edit = el('button', { type: 'button' }, 'Edit…');
      edit.addEventListener('click', () => {
        document.getElementById('put-key').value = key;
        document.getElementById('put-value').value = view.current.decoded.text || view.current.decoded.pretty || '';
      });
      parts.push(el('p', {}, edit, ' ', del));
    }
    pane.replaceChildren(...parts);
  }

  async function init() {
    const started = performance.now();
    refreshStatus();
    try {
      writable = (await api('api/config')).write;
    } catch (_) { writable = false; }
    document.getElementById('mode').textContent = writable ? 'writes allowed' : 'read-only';
    if (writable) {
      const form = document.getElementById('put');
      form.hidden = false;
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const key = document.getElementById('put-key').value;
        const value = document.getElementById('put-value').value;
        if (!key || !window.confirm('Put ' + key + ' (' + value.length + ' bytes) into etcd?')) return;
        try {
          await api('api/put', { key, value });
          showKey(key, null);
        } catch (e) { window.alert(e.message); }
      });
    }
    const root = document.getElementById('tree');
    // The root and the levels it usually opens, in one scan.
    try {
      const levels = await api('api/levels?prefix=&prefix=%2F&prefix=%2Fregistry%2F');
      for (const l of levels) prefetched.set(l.prefix, l);
    } catch (_) { /* loadLevel shows the error */ }
    const level = await loadLevel(root, '');
    if (level) document.getElementById('total').textContent = level.keys + ' keys · ' + size(level.bytes);
    await autoExpand(root, level);
    prefetched.clear();
    document.body.dataset.loadMs = String(Math.round(performance.now() - started));
    document.body.dataset.ready = '1';
  }

  window.topgunBrowse = { showKey };
  init();
})();
