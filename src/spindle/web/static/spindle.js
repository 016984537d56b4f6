// Spindle's pages without reloading: runs' server-sent events (the API's event streams)
// refresh the parts of a page that changed, and logs of running runs are followed.
// Every page works without this file; it only keeps them current.
(function () {
  "use strict";

  const TERMINAL = new Set(["COMPLETE", "EXECUTOR_ERROR", "SYSTEM_ERROR", "CANCELED", "PREEMPTED"]);
  const LOG_POLL_MS = 1000;

  // --- forms that ask first ----------------------------------------------------------------
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });

  // --- logs ---------------------------------------------------------------------------------
  // A <pre data-follow data-stream data-offset> follows the API's live log stream (server-
  // sent events from byte data-offset; a reconnect resumes from the last piece's offset)
  // until its "done" event. Without EventSource, <pre data-follow data-url> gets what the
  // log grew by every second until the run ends (then once more, for the last lines).
  const followers = [];

  function streamLog(pre) {
    const source = new EventSource(pre.dataset.stream + "?offset=" + Number(pre.dataset.offset || 0));
    source.addEventListener("log", function (message) {
      const piece = JSON.parse(message.data);
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.append(piece.text);
      pre.dataset.offset = String(piece.next_offset);
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    });
    source.addEventListener("done", function () {
      source.close();
      pre.removeAttribute("data-follow");
    });
    pre.scrollTop = pre.scrollHeight;
  }

  function followLog(pre) {
    if (pre.dataset.stream && window.EventSource) {
      streamLog(pre);
      return;
    }
    const decoder = new TextDecoder("utf-8");
    const state = { offset: Number(pre.dataset.offset || 0), ended: false, done: false };
    async function poll() {
      const finalRound = state.ended;
      try {
        const answer = await fetch(pre.dataset.url + "?offset=" + state.offset, { cache: "no-store" });
        if (answer.ok) {
          const bytes = new Uint8Array(await answer.arrayBuffer());
          const next = Number(answer.headers.get("X-Spindle-Next-Offset"));
          state.offset = Number.isFinite(next) ? next : state.offset + bytes.length;
          if (bytes.length) {
            const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
            pre.append(decoder.decode(bytes, { stream: true }));
            if (atBottom) pre.scrollTop = pre.scrollHeight;
          }
        }
      } catch (_error) {
        // the server went away for a moment; try again on the next round
      }
      if (finalRound) {
        state.done = true;
        pre.removeAttribute("data-follow");
      } else {
        window.setTimeout(poll, LOG_POLL_MS);
      }
    }
    followers.push(state);
    pre.scrollTop = pre.scrollHeight;
    window.setTimeout(poll, LOG_POLL_MS);
  }

  function logsEnded() {
    followers.forEach(function (f) { f.ended = true; });
  }

  // --- a run's page -------------------------------------------------------------------------
  // #live[data-events] follows the run's events; every state or progress event reloads the
  // live part of the page (state, progress, timeline, tasks, outputs, buttons).
  function followRun(live) {
    const source = new EventSource(live.dataset.events);
    let timer = null;
    let ended = false;
    function refresh() {
      if (timer !== null) return;
      timer = window.setTimeout(function () {
        timer = null;
        htmx.ajax("GET", live.dataset.fragment, { target: live, swap: "innerHTML" });
      }, 150);
    }
    source.addEventListener("state", function (message) {
      const event = JSON.parse(message.data);
      refresh();
      if (TERMINAL.has(event.state)) {
        ended = true;
        source.close();
        logsEnded();
      }
    });
    source.addEventListener("progress", refresh);
    source.addEventListener("error", function () {
      // the stream ends when the run has ended: the browser would open it again
      if (ended) source.close();
    });
  }

  // --- the runs table -----------------------------------------------------------------------
  // #runs[data-events] follows every run's events while the table shows unfinished runs (or
  // is the first page, where new runs would appear) and reloads the rows that changed: from
  // data-row-url ("{id}" is the run's id; default /runs/{id}/row), and then the element that
  // data-refresh names from its own data-fragment (a run group's usage).
  let runsSource = null;

  function rowUrl(runs, runId) {
    const template = runs.dataset.rowUrl || "/runs/{id}/row";
    return template.replace("{id}", encodeURIComponent(runId));
  }

  function refreshAlso(runs) {
    const other = runs.dataset.refresh ? document.querySelector(runs.dataset.refresh) : null;
    if (other !== null && other.dataset.fragment) {
      htmx.ajax("GET", other.dataset.fragment, { target: other, swap: "innerHTML" });
    }
  }

  function unfinishedRows(table) {
    return Array.from(table.querySelectorAll("tr[data-state]")).some(function (row) {
      return !TERMINAL.has(row.dataset.state);
    });
  }

  function followRuns(runs) {
    if (runsSource !== null) {
      runsSource.close();
      runsSource = null;
    }
    const firstPage = runs.dataset.firstPage === "true";
    if (!firstPage && !unfinishedRows(runs)) return;
    const source = new EventSource(runs.dataset.events);
    runsSource = source;
    source.addEventListener("state", function (message) {
      const event = JSON.parse(message.data);
      const row = document.getElementById("run-" + event.run_id);
      if (row !== null && runs.isConnected) {
        htmx.ajax("GET", rowUrl(runs, event.run_id), {
          target: row,
          swap: "outerHTML",
        }).then(function () {
          refreshAlso(runs);
          if (!firstPage && !unfinishedRows(runs)) {
            source.close();
            if (runsSource === source) runsSource = null;
          }
        });
      } else if (row === null && firstPage && event.state === "QUEUED") {
        const notice = runs.querySelector("[data-new-runs]");
        if (notice !== null) notice.hidden = false;
      }
    });
  }

  // --- the submit form ----------------------------------------------------------------------
  // Lists the chosen files with the paths they will have, offers them as the main workflow
  // file, and picks the obvious one when the field is still empty.
  const MAIN_FILES = [
    "Snakefile", "workflow/Snakefile", "main.cwl", "workflow.cwl", "main.wdl", "workflow.wdl",
  ];

  function chosenNames(form) {
    const names = [];
    const files = form.querySelector("#workflow_attachment");
    const folder = form.querySelector("#workflow_folder");
    if (files !== null) Array.from(files.files).forEach(function (f) { names.push(f.name); });
    if (folder !== null) {
      Array.from(folder.files).forEach(function (f) {
        const path = f.webkitRelativePath || f.name;
        const slash = path.indexOf("/");
        names.push(slash >= 0 ? path.slice(slash + 1) : path);
      });
    }
    return names.sort();
  }

  function enhanceSubmit(form) {
    const list = form.querySelector("#chosen-files");
    const datalist = form.querySelector("#uploaded-names");
    const url = form.querySelector("#workflow_url");
    function update() {
      const names = chosenNames(form);
      list.replaceChildren.apply(list, names.map(function (name) {
        const item = document.createElement("li");
        item.textContent = name;
        return item;
      }));
      list.hidden = names.length === 0;
      datalist.replaceChildren.apply(datalist, names.map(function (name) {
        const option = document.createElement("option");
        option.value = name;
        return option;
      }));
      if (!url.value) {
        const main = MAIN_FILES.find(function (name) { return names.includes(name); })
          || names.find(function (name) { return /\.(cwl|wdl)$/.test(name); });
        if (main) {
          url.value = main;
          pickType(main);
        }
      }
    }
    // Snakefile → SMK, *.cwl → CWL, *.wdl → WDL (the types Spindle runs), unless that type
    // is chosen
    function pickType(main) {
      const select = form.querySelector("#workflow");
      const type = /Snakefile$|\.smk$/.test(main) ? "SMK"
        : /\.cwl$/.test(main) ? "CWL" : /\.wdl$/.test(main) ? "WDL" : null;
      if (select === null || type === null || select.value.split("|")[0] === type) return;
      const option = Array.from(select.options).find(function (o) { return o.value.split("|")[0] === type; });
      if (option) select.value = option.value;
    }
    form.addEventListener("change", function (event) {
      if (event.target instanceof HTMLInputElement && event.target.type === "file") update();
    });
  }

  // --- start --------------------------------------------------------------------------------
  function start(root) {
    const scope = root instanceof Element ? root : document;
    const find = function (selector) {
      return root instanceof Element && root.matches(selector) ? root : scope.querySelector(selector);
    };
    const live = find("#live[data-events]");
    if (live !== null && !live.dataset.following) {
      live.dataset.following = "true";
      followRun(live);
    }
    scope.querySelectorAll("pre.log[data-follow]").forEach(function (pre) {
      if (!pre.dataset.following) {
        pre.dataset.following = "true";
        followLog(pre);
      }
    });
    const runs = find("#runs[data-events]");
    if (runs !== null && !runs.dataset.following) {
      runs.dataset.following = "true";
      followRuns(runs);
    }
    const form = find("#submit-form");
    if (form !== null && !form.dataset.enhanced) {
      form.dataset.enhanced = "true";
      enhanceSubmit(form);
    }
  }

  if (window.htmx) {
    htmx.onLoad(start);
  } else {
    start(document);
  }
})();
