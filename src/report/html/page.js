// Waveform: click to seek the call's players; a red playhead follows playback.
document.querySelectorAll("section.call").forEach(function (section) {
  var svg = section.querySelector("svg.wave");
  if (!svg) return;
  var audios = Array.prototype.slice.call(section.querySelectorAll("audio"));
  var duration = parseFloat(svg.getAttribute("data-duration-ms"));
  var left = parseFloat(svg.getAttribute("data-plot-left"));
  var plot = parseFloat(svg.getAttribute("data-plot-width"));
  var head = svg.querySelector(".playhead");
  function show(ms) {
    var x = left + Math.min(Math.max(ms / duration, 0), 1) * plot;
    head.setAttribute("x1", x); head.setAttribute("x2", x); head.setAttribute("visibility", "visible");
  }
  svg.addEventListener("click", function (event) {
    var box = svg.getBoundingClientRect();
    var x = (event.clientX - box.left) / box.width * svg.viewBox.baseVal.width;
    var ms = (x - left) / plot * duration;
    if (ms < 0 || ms > duration) return;
    audios.forEach(function (a) { a.currentTime = ms / 1000; });
    show(ms);
  });
  audios.forEach(function (a) {
    function follow() { show(a.currentTime * 1000); if (!a.paused) requestAnimationFrame(follow); }
    a.addEventListener("play", follow);
    a.addEventListener("seeked", function () { show(a.currentTime * 1000); });
  });
});
// Ladder arrows link to raw messages inside closed <details>: open them.
function openLinkedMessage() {
  var target = location.hash && document.getElementById(location.hash.slice(1));
  if (!target) return;
  for (var d = target.closest("details"); d; d = d.parentElement && d.parentElement.closest("details")) d.open = true;
  target.scrollIntoView();
}
window.addEventListener("hashchange", openLinkedMessage);
openLinkedMessage();
