from django.urls import path

from agentops.endpoints import views

app_name = "endpoints"

urlpatterns = [
    path("", views.endpoints, name="list"),
    path("new/", views.endpoint_create, name="create"),
    path("prices/", views.prices, name="prices"),
    path("prices/<int:pk>/", views.price_edit, name="price"),
    path("prices/<int:pk>/delete", views.price_delete, name="price_delete"),
    path("<int:pk>/", views.endpoint_detail, name="detail"),
    path("<int:pk>/test", views.endpoint_test, name="test"),
    path("<int:pk>/reset", views.endpoint_reset, name="reset"),
]
