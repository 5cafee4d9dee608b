// Refreshes the page in place (keeping the scroll position) and, when honeyguide stops
// answering, says so at the top instead of showing old data as if it were current.
(function () {
  "use strict";
  var seconds = Number(document.body.dataset.refresh) || 15;
  var banner = document.getElementById("stale");
  var lastOk = new Date();
  function stale(reason) {
    banner.textContent = "Not updated since " + lastOk.toLocaleTimeString() + " (" + reason +
      "): what you see may be out of date.";
    banner.hidden = false;
  }
  function refresh() {
    if (document.hidden) return;
    fetch(location.href, { cache: "no-store" })
      .then(function (response) {
        if (!response.ok) throw new Error("honeyguide answered " + response.status);
        return response.text();
      })
      .then(function (html) {
        var next = new DOMParser().parseFromString(html, "text/html");
        var page = next.getElementById("page");
        if (!page) throw new Error("unexpected answer");
        document.getElementById("page").replaceWith(page);
        document.title = next.title;
        lastOk = new Date();
        banner.hidden = true;
      })
      .catch(function (error) {
        stale(error instanceof TypeError ? "honeyguide is not answering" : error.message);
      });
  }
  setInterval(refresh, seconds * 1000);
  document.addEventListener("visibilitychange", refresh);
})();
