// The board's live part: one EventSource; each `board` message is the board's HTML fragment,
// rendered and escaped by the gateway, swapped in whole. No library, no build step.
// A reveal (a person's names and phones, asked with a purpose) is posted with fetch and shown
// inline, in its row; while one is open the board is not swapped (the purpose being typed and the
// record shown would go), and closing it drops the record from the page.
(function () {
  var board = document.getElementById("board"), live = document.getElementById("live");
  if (!board || !window.EventSource) return;  // without it the page is as it was served: reload to update
  var source = new EventSource("/board/events"), held = null;
  function say(zh, en, on) {
    live.innerHTML = '<span class="zh">' + zh + '</span> <span class="en">' + en + "</span>";
    live.className = on ? "live on" : "live off";
  }
  function revealing() { return board.querySelector("details.reveal[open]") !== null; }
  function show(e) {
    board.innerHTML = e.data;
    board.setAttribute("data-seq", e.lastEventId);
    say("实时", "live", true);
  }
  source.addEventListener("board", function (e) {
    if (revealing()) { held = e; say("已暂停", "paused while revealing", true); return; }
    show(e);
  });
  board.addEventListener("toggle", function (e) {  // toggle does not bubble: caught on the way down
    var details = e.target;
    if (details.open || !details.classList || !details.classList.contains("reveal")) return;
    var shown = details.querySelector(".revealed");
    if (shown) shown.innerHTML = "";
    if (held && !revealing()) { var next = held; held = null; show(next); }
  }, true);
  board.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form.classList.contains("reveal")) return;
    e.preventDefault();
    var out = form.parentNode.querySelector(".revealed");
    fetch(form.action, {method: "POST", body: new URLSearchParams(new FormData(form)),
                        headers: {"x-cordon-fragment": "1"}, credentials: "same-origin"})
      .then(function (r) { return r.text(); })
      .then(function (text) { out.innerHTML = text; })
      .catch(function () { out.textContent = "—"; });
  });
  source.addEventListener("end", function () { source.close(); window.location.assign("/login"); });
  source.onerror = function () {
    say("重新连接中", "reconnecting", false);  // EventSource retries by itself
    if (source.readyState === EventSource.CLOSED) window.setTimeout(function () { window.location.reload(); }, 3000);
  };
})();
