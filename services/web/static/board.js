// The board's live part: one EventSource; each `board` message is the board's HTML fragment,
// rendered and escaped by the gateway, swapped in whole. No library, no build step.
(function () {
  var board = document.getElementById("board"), live = document.getElementById("live");
  if (!board || !window.EventSource) return;  // without it the page is as it was served: reload to update
  var source = new EventSource("/board/events");
  function say(zh, en, on) {
    live.innerHTML = '<span class="zh">' + zh + '</span> <span class="en">' + en + "</span>";
    live.className = on ? "live on" : "live off";
  }
  source.addEventListener("board", function (e) {
    board.innerHTML = e.data;
    board.setAttribute("data-seq", e.lastEventId);
    say("实时", "live", true);
  });
  source.addEventListener("end", function () { source.close(); window.location.assign("/login"); });
  source.onerror = function () {
    say("重新连接中", "reconnecting", false);  // EventSource retries by itself
    if (source.readyState === EventSource.CLOSED) window.setTimeout(function () { window.location.reload(); }, 3000);
  };
})();
